#!/usr/bin/env bash
# LKML, July 2002, "Driverfs updates" -- get_driver() and try_inc_mod_count() without a lock.
#
# open() finds the driver, then takes its module reference. Without a lock an rmmod can run
# in between: the count is still zero, so the module goes, code and all, and the open wakes
# up in freed text (an oops kills it). With the driver lock, which unload also takes, the open
# fails cleanly. A module whose device is open cannot be removed at all. And close: a module
# that drops its count inside its own close can go before the close returns, unless the
# caller holds the count around the close.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for drv in cdev_modref_locked cdev_modref_racy; do
  need_bound $drv $drv.0
  refcnt=$(cat sys/module/$drv/refcnt)
  [ "$refcnt" = 0 ] || needs "module $drv unused, to unload it (refcnt $refcnt: a file is open elsewhere)"
done

reload() {
  [ -d "sys/module/$1" ] || echo "$1" > $ctl/init_module
}

say "rmmod of a module with an open file"
exec 3<dev/modlocked0
# The driver counts its module itself (its file operations have no owner): one per open file.
expect_eq "refcnt with one open file" 1 "$(cat sys/module/cdev_modref_locked/refcnt)"
expect_error "rmmod while open" "Resource temporarily unavailable" \
  bash -c "echo cdev_modref_locked > $ctl/delete_module"
exec 3<&-
expect_eq "refcnt after close" 0 "$(cat sys/module/cdev_modref_locked/refcnt)"
echo cdev_modref_locked > $ctl/delete_module
expect_eq "module after rmmod" absent "$([ -d sys/module/cdev_modref_locked ] && echo present || echo absent)"
expect_error "rmmod of an unknown module" "No such file or directory" \
  bash -c "echo cdev_modref_locked > $ctl/delete_module"
reload cdev_modref_locked
expect_eq "node after reload" present "$([ -e dev/modlocked0 ] && echo present || echo absent)"

say "buggy: the reference taken without the lock (dev/modracy0)"
mark=$(kmsg_mark)
echo 1 > $ctl/hold/module_get
tmp=$(mktemp)
(cat dev/modracy0 >/dev/null 2>"$tmp") &
opener=$!
wait_held module_get
echo cdev_modref_racy > $ctl/delete_module
expect_eq "rmmod during the open" absent "$([ -d sys/module/cdev_modref_racy ] && echo present || echo absent)"
echo 0 > $ctl/hold/module_get
wait $opener
# the open resumed in the module's freed text: the oops kills the task (SIGKILL)
expect_eq "the opener" 137 "$?"
expect_eq "the oops" "#PF: supervisor instruction fetch in kernel mode" \
  "$(kmsg_since "$mark" | grep -m1 -A1 '^BUG: unable to handle page fault' | tail -1)"
expect_eq "taint D" 128 "$(( $(taint) & 128 ))"
reload cdev_modref_racy

say "fixed: the reference taken under the driver lock (dev/modlocked0)"
mark=$(kmsg_mark)
echo 1 > $ctl/hold/module_get
(cat dev/modlocked0 >/dev/null 2>"$tmp") &
opener=$!
wait_held module_get
echo cdev_modref_locked > $ctl/delete_module &
remover=$!
wait_going cdev_modref_locked
expect_eq "rmmod while the open holds the lock" waiting "$(in_flight $remover)"
echo 0 > $ctl/hold/module_get
wait $opener
expect_eq "the open" "No such device or address" "$(grep -o 'No such device or address' "$tmp")"
wait $remover
expect_eq "rmmod after the open" 0 "$?"
expect_no_report "modref-locked" "$mark"
rm -f "$tmp"
reload cdev_modref_locked

# closer NODE SECONDS: open and close NODE, then stay alive that long (so that a kill of the
# closing task can be seen)
closer() {
  "$python" -c "import os, sys, time; os.close(os.open(sys.argv[1], os.O_RDONLY)); time.sleep(int(sys.argv[2]))" "$@"
}

say "buggy: the count dropped inside the module's own close (dev/closeracy0)"
mark=$(kmsg_mark)
echo 1 > $ctl/hold/close_return
closer dev/closeracy0 30 &
closing=$!
wait_held close_return
expect_eq "refcnt before the close returns" 0 "$(cat sys/module/cdev_close_racy/refcnt)"
echo cdev_close_racy > $ctl/delete_module
expect_eq "rmmod during the close" absent "$([ -d sys/module/cdev_close_racy ] && echo present || echo absent)"
echo 0 > $ctl/hold/close_return
wait $closing
expect_eq "the closing task, killed by the oops" 137 "$?"
expect_eq "the oops" "#PF: supervisor instruction fetch in kernel mode" \
  "$(kmsg_since "$mark" | grep -m1 -A1 '^BUG: unable to handle page fault' | tail -1)"
reload cdev_close_racy

say "fixed: the caller holds the count around close (dev/closeheld0)"
echo 1 > $ctl/hold/close_return
closer dev/closeheld0 0 &
closing=$!
wait_held close_return
# chrdev_open() took one for cdev->owner and one for fops->owner; __fput() drops them after
expect_eq "refcnt before the close returns" 2 "$(cat sys/module/cdev_close_held/refcnt)"
expect_error "rmmod during the close" "Resource temporarily unavailable" \
  bash -c "echo cdev_close_held > $ctl/delete_module"
echo 0 > $ctl/hold/close_return
wait $closing
poll "[ \"\$(cat sys/module/cdev_close_held/refcnt)\" = 0 ]" || fail "the close never returned"
echo cdev_close_held > $ctl/delete_module
expect_eq "rmmod after the close" absent "$([ -d sys/module/cdev_close_held ] && echo present || echo absent)"
reload cdev_close_held

finish
