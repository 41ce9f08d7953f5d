#!/usr/bin/env bash
# Mount scenario.toml, reproduce the bug of thermo.py and show the fix of thermo_fixed.py:
# after an unbind, the buggy driver's temp1_input is still there and reading it is a
# use-after-free (KASAN, taint B); the fixed driver's is gone. Exits non-zero on a mismatch.
#
#   ./check.sh                  with fakesys on PATH
#   FAKESYS=/path/to/fakesys ./check.sh
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fakesys=${FAKESYS:-fakesys}
mnt=$(mktemp -d "${TMPDIR:-/tmp}/thermo.XXXXXX")
failures=0

ok() { printf '   ok: %s\n' "$*"; }
fail() { printf '   FAIL: %s\n' "$*"; failures=$((failures + 1)); }
expect() {  # expect WHAT EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then ok "$1: $3"; else fail "$1: expected '$2', got '$3'"; fi
}
kasan() { dd if=dev/kmsg iflag=nonblock status=none 2>/dev/null | grep -m1 '^.*;BUG: KASAN' \
  | sed 's/^[^;]*;//'; }

$fakesys mount --scenario "$here/scenario.toml" "$mnt" > "$mnt.out" 2> "$mnt.err" &
daemon=$!
trap 'cd /; kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; rmdir "$mnt"; rm -f "$mnt.out" "$mnt.err"' EXIT
until grep -q '^fakesys: mounted' "$mnt.out" 2>/dev/null; do
  if ! kill -0 $daemon 2>/dev/null; then
    echo "check.sh: could not mount: $(cat "$mnt.err")" >&2
    exit 2
  fi
  sleep 0.05
done
cd "$mnt" || exit 2
ctl=sys/kernel/debug/fakesys
drivers=sys/bus/platform/drivers

echo "== buggy: thermo.py"
echo 41500 > $ctl/devices/thermo.0/feed
expect "reading while bound" 41500 "$(cat sys/devices/platform/thermo.0/temp1_input)"
echo thermo.0 > $drivers/thermo/unbind
expect "attribute after unbind" present \
  "$([ -e sys/devices/platform/thermo.0/temp1_input ] && echo present || echo absent)"
expect "reading after unbind (the freed state)" 41500 \
  "$(cat sys/devices/platform/thermo.0/temp1_input)"
expect "report" "BUG: KASAN: slab-use-after-free in thermo_temp_show" \
  "$(kasan | sed 's/+0x.*//')"
expect "taint" 32 "$(cat proc/sys/kernel/tainted)"
bind_error=$(echo thermo.0 2>&1 > $drivers/thermo/bind)
expect "rebind (the stale attribute is in the way)" "File exists" \
  "$(echo "$bind_error" | grep -o 'File exists')"

echo "== fixed: thermo_fixed.py"
echo 1 > $ctl/kasan_multi_shot
before=$(dd if=dev/kmsg iflag=nonblock status=none 2>/dev/null | grep -c 'BUG: KASAN')
echo 22000 > $ctl/devices/thermo_fixed.0/feed
expect "reading while bound" 22000 "$(cat sys/devices/platform/thermo_fixed.0/temp1_input)"
echo thermo_fixed.0 > $drivers/thermo_fixed/unbind
expect "attribute after unbind" absent \
  "$([ -e sys/devices/platform/thermo_fixed.0/temp1_input ] && echo present || echo absent)"
after=$(dd if=dev/kmsg iflag=nonblock status=none 2>/dev/null | grep -c 'BUG: KASAN')
expect "no new report" "$before" "$after"
echo thermo_fixed.0 > $drivers/thermo_fixed/bind
expect "attribute after rebind" present \
  "$([ -e sys/devices/platform/thermo_fixed.0/temp1_input ] && echo present || echo absent)"

if [ $failures -gt 0 ]; then
  echo "$failures expectation(s) not met"
  exit 1
fi
echo "all expectations met"
