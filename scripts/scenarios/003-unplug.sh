#!/usr/bin/env bash
# The V4L2 unplug RFC (Laurent Pinchart) -- video_device_enter()/exit() and video_device_unplug().
#
# Operations that use device resources run in counted sections. Unplug refuses new entries,
# wakes blocked operations, waits for the sections in flight to exit, and only then lets the
# driver free the resources. The devm driver, without sections, frees them under the read.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_bound cdev_unplug cdev_unplug.0

mark=$(kmsg_mark)
taint_before=$(taint)

say "unplug wakes a blocked reader with ENODEV"
exec 3<dev/unplug0
tmp=$(mktemp)
(head -c 5 <&3 >/dev/null 2>"$tmp") &
reader=$!
wait_readers cdev_unplug.0 1
echo cdev_unplug.0 > $drivers/cdev_unplug/unbind
wait $reader
expect_eq "blocked read" "No such device" "$(grep -o 'No such device' "$tmp")"
expect_error "read after unplug" "No such device" head -c 1 <&3
exec 3<&-
rm -f "$tmp"
rebind cdev_unplug cdev_unplug.0

say "unplug waits for a section in flight"
echo 1 > $ctl/hold/read
echo -n hello > $ctl/devices/cdev_unplug.0/feed
tmp=$(mktemp)
head -c 5 dev/unplug0 > "$tmp" &
reader=$!
wait_held read
echo cdev_unplug.0 > $drivers/cdev_unplug/unbind &
unbinder=$!
wait_unbinding cdev_unplug.0
expect_eq "unbind while a section is in flight" waiting "$(in_flight $unbinder)"
echo 0 > $ctl/hold/read
wait $reader
expect_eq "the section completes" hello "$(cat "$tmp")"
wait $unbinder
rm -f "$tmp"
expect_no_report "unplug" "$mark"
expect_eq "taint" "$taint_before" "$(taint)"
rebind cdev_unplug cdev_unplug.0

finish
