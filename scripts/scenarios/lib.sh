# Shared by the scenario scripts: mount (or reuse) a tree, and check expectations.
#
# A script sources this file, then works inside the mount (the current directory). It mounts
# the built-in scenario on a temporary directory and unmounts it on exit, or uses the mount
# named by FAKESYS_MOUNT when that is set. Every check that fails is reported and makes the
# script exit 1.
#
# A shared tree may be in any state: devices unbound, modules unloaded, hold points armed by a
# script that was interrupted. Each script first brings what it uses to a known state (every
# hold point and delay is released here, need_bound binds its devices afresh, the devcoredump
# script deletes the dumps left of its devices), or stops with one line saying what it needs
# and exit status 2.

set -u
scenarios_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$scenarios_dir/../.." && pwd)
failures=0
daemon_pid=""
own_mount=""

if [ -x "$repo/.venv/bin/python" ]; then
  python=$repo/.venv/bin/python
else
  python=${PYTHON:-python3}
fi

cleanup() {
  cd / || true
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  if [ -n "$own_mount" ]; then
    fusermount3 -u -z "$own_mount" 2>/dev/null
    rm -f "$own_mount.log" "$own_mount.out"
    rmdir "$own_mount" 2>/dev/null
  fi
  jobs -p | xargs -r kill 2>/dev/null
}
trap cleanup EXIT

if [ -n "${FAKESYS_MOUNT:-}" ]; then
  cd "$FAKESYS_MOUNT" || exit 2
else
  own_mount=$(mktemp -d "${TMPDIR:-/tmp}/fakesys-scenario.XXXXXX")
  "$python" -m fakesys mount "$own_mount" >"$own_mount.out" 2>"$own_mount.log" &
  daemon_pid=$!
  for _ in $(seq 400); do
    grep -q '^fakesys: mounted' "$own_mount.out" 2>/dev/null && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! grep -q '^fakesys: mounted' "$own_mount.out" 2>/dev/null; then
    echo "could not mount: $(cat "$own_mount.log")" >&2
    exit 2
  fi
  cd "$own_mount" || exit 2
fi

ctl=sys/kernel/debug/fakesys
drivers=sys/bus/platform/drivers
script_name=$(basename "$0")

# needs WHAT: the tree cannot be used as this script needs; one line, exit status 2
needs() {
  echo "$script_name: needs $*" >&2
  exit 2
}

[ -d "$ctl" ] || needs "a fakesys tree (no $ctl in $PWD)"
# Report every use after free, not only the first of the mount's life.
echo 1 > $ctl/kasan_multi_shot
# release_holds DIR: every hold point and delay under DIR off
release_holds() {
  local point
  for point in "$1"/hold/* "$1"/delay/*; do echo 0 > "$point"; done
}
release_holds $ctl

say() { printf '\n== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() { printf '   FAIL: %s\n' "$*"; failures=$((failures + 1)); }

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  if [ "$2" = "$3" ]; then ok "$1: $3"; else fail "$1: expected '$2', got '$3'"; fi
}

# expect_error WHAT MESSAGE COMMAND...: the command fails and says MESSAGE (an strerror text)
expect_error() {
  local what=$1 message=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    fail "$what: succeeded, expected '$message'"
  elif [[ $out == *"$message"* ]]; then
    ok "$what: $message"
  else
    fail "$what: expected '$message', got '$out'"
  fi
}

# kmsg_mark: the sequence number the next kernel log record will get
kmsg_mark() {
  "$python" - <<'PY'
import os
fd = os.open("dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
last = -1
while True:
    try:
        last = int(os.read(fd, 8192).split(b",")[1])
    except BlockingIOError:
        break
print(last + 1)
PY
}

# kmsg_since SEQ: the messages logged from SEQ on, one per line
kmsg_since() {
  "$python" - "$1" <<'PY'
import os, signal, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
since = int(sys.argv[1])
fd = os.open("dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
while True:
    try:
        record = os.read(fd, 8192).decode()
    except BlockingIOError:
        break
    header, _, text = record.partition(";")
    if int(header.split(",")[1]) >= since:
        print(text.split("\n")[0])
PY
}

# expect_report WHAT SEQ FUNCTION [BUG]: a KASAN report of BUG (slab-use-after-free unless
# given) in FUNCTION since SEQ
expect_report() {
  local line bug=${4:-slab-use-after-free}
  line=$(kmsg_since "$2" | grep -m1 '^BUG: KASAN: ')
  if [[ $line == "BUG: KASAN: $bug in $3+"* ]]; then
    ok "$1: $line"
  else
    fail "$1: expected a $bug report in $3, got '${line:-no report}'"
  fi
}

# expect_no_report WHAT SEQ
expect_no_report() {
  local line
  line=$(kmsg_since "$2" | grep -m1 '^BUG: KASAN: ')
  if [ -z "$line" ]; then ok "$1: no KASAN report"; else fail "$1: unexpected '$line'"; fi
}

taint() { cat proc/sys/kernel/tainted; }

# expect_taint_b WHAT: taint bit B (32) is set
expect_taint_b() {
  if (( $(taint) & 32 )); then ok "$1: taint B set ($(taint))"; else fail "$1: taint B not set ($(taint))"; fi
}

# poll SHELL-CONDITION: true as soon as the condition holds, false after 10 s
poll() {
  local i
  for i in $(seq 200); do
    eval "$1" && return 0
    sleep 0.05
  done
  return 1
}

# wait_held POINT: until an operation is stopped at the hold point
wait_held() {
  poll "[ \"\$(cat $ctl/hold/$1)\" = held ]" || { fail "nothing reached the hold point $1"; return 1; }
}

# wait_readers DEVICE N: until N reads are blocked waiting for DEVICE's data
wait_readers() {
  poll "[ \"\$(cat $ctl/devices/$1/readers)\" -ge $2 ]" ||
    { fail "no read of $1 blocked in the driver"; return 1; }
}

# wait_unbinding DEVICE: until an unbind of DEVICE has begun (its driver link goes first)
wait_unbinding() {
  poll "[ ! -e sys/bus/platform/devices/$1/driver ]" || { fail "no unbind of $1 began"; return 1; }
}

# wait_going MODULE: until an rmmod of MODULE has begun (the module is going)
wait_going() {
  poll "[ \"\$(cat sys/module/$1/initstate)\" = going ]" || { fail "no rmmod of $1 began"; return 1; }
}

# in_flight PID: "waiting" while the background job PID has not returned, else "returned"
in_flight() { kill -0 "$1" 2>/dev/null && echo waiting || echo returned; }

# rebind DRIVER DEVICE: make sure DEVICE is bound to DRIVER again (for a shared mount)
rebind() {
  [ -e "$drivers/$1/$2" ] || echo "$2" > "$drivers/$1/bind"
}

# need_bound DRIVER DEVICE...: each (platform) DEVICE freshly bound to DRIVER, with its hold
# points released: the driver's module (named after it in the built-in scenario) is loaded if
# it is not, and a device bound to DRIVER or to another driver is unbound first, so the
# driver starts from a clean probe (no data left from an earlier user).
need_bound() {
  local drv=$1 dev bound err
  shift
  if [ ! -d "$drivers/$drv" ]; then
    err=$( { echo "$drv" > $ctl/init_module; } 2>&1 ) ||
      needs "the driver $drv; loading its module failed: ${err##*: } (not the built-in scenario?)"
  fi
  for dev in "$@"; do
    [ -e "sys/bus/platform/devices/$dev" ] || needs "the device $dev (not the built-in scenario?)"
    release_holds "$ctl/devices/$dev"
    [ "$(cat "$ctl/devices/$dev/readers")" = 0 ] ||
      needs "no read of $dev blocked in its driver (another program has one: end it)"
    bound=$(readlink "sys/bus/platform/devices/$dev/driver")
    if [ -n "$bound" ]; then
      echo "$dev" > "$drivers/${bound##*/}/unbind"
    fi
    err=$( { echo "$dev" > "$drivers/$drv/bind"; } 2>&1 ) ||
      needs "$dev bound to $drv; binding it failed: ${err##*: }" \
        "(driver_override: $(cat "sys/bus/platform/devices/$dev/driver_override"))"
  done
}

finish() {
  if [ "$failures" -eq 0 ]; then
    printf '\nall expectations met\n'
    exit 0
  fi
  printf '\n%d expectation(s) not met\n' "$failures"
  exit 1
}
