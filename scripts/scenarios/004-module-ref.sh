#!/usr/bin/env bash
# LKML, July 2002, "Driverfs updates" -- get_driver() and try_inc_mod_count() without a lock.
#
# open() finds the driver, then takes its module reference. Without a lock an rmmod can run
# in between: the count is still zero, so the module goes, and the open goes on with freed
# driver memory. With the driver lock, which unload also takes, the open fails cleanly.
# And a module whose device is open cannot be removed at all.
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
expect_eq "the open" "No such device or address" "$(grep -o 'No such device or address' "$tmp")"
# the driver structure was in the module's memory, vfree()d by the unload
expect_report "open after unload" "$mark" get_driver vmalloc-out-of-bounds
expect_taint_b "open after unload"
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

finish
