#!/usr/bin/env bash
# The V4L2 unplug RFC (Laurent Pinchart) -- video_device_enter()/exit() and video_device_unplug().
#
# Operations that use device resources run in counted sections. Unplug refuses new entries,
# waits for the sections in flight to exit, and only then lets the driver free the resources.
#   dev/unplug0     solved: unplug also wakes blocked operations, which leave with ENODEV
#   dev/unplugrfc0  as posted ("blocking operations need to be unblocked at unbind time"):
#                   unplug waits for a blocked read until data comes, or gives up after
#                   150 s with a WARN and frees the device under it
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

rfc_unbind=$drivers/cdev_unplug_rfc/unbind
# blocked_rfc_reader: a read of dev/unplugrfc0 blocked for data, then an unbind in remove();
# sets $reader, $unbinder and $tmp
blocked_rfc_reader() {
  tmp=$(mktemp)
  head -c 5 dev/unplugrfc0 > "$tmp" 2>&1 &
  reader=$!
  wait_readers cdev_unplug_rfc.0 1
  echo cdev_unplug_rfc.0 > $rfc_unbind &
  unbinder=$!
  wait_unbinding cdev_unplug_rfc.0
}

say "as posted: unplug waits for a blocked reader until data comes"
blocked_rfc_reader
expect_eq "unbind behind the blocked read" waiting "$(in_flight $unbinder)"
echo -n hello > $ctl/devices/cdev_unplug_rfc.0/feed
wait $reader
expect_eq "the read gets its data" hello "$(cat "$tmp")"
wait $unbinder
expect_eq "the unbind, after the read" 0 "$?"
rm -f "$tmp"
rebind cdev_unplug_rfc cdev_unplug_rfc.0

say "as posted: with no data, unplug gives up after 150 s and WARNs"
mark=$(kmsg_mark)
blocked_rfc_reader
echo 150 > $ctl/advance_clock
wait $unbinder
expect_eq "the warning" "Timeout waiting for device access to complete" \
  "$(kmsg_since "$mark" | grep -m1 -A1 'cut here' | tail -1)"
expect_eq "taint W" 512 "$(( $(taint) & 512 ))"
expect_eq "the reader, asleep on a device that is gone" 1 \
  "$(cat $ctl/devices/cdev_unplug_rfc.0/readers)"
kill $reader
wait $reader 2>/dev/null
rm -f "$tmp"
rebind cdev_unplug_rfc cdev_unplug_rfc.0

finish
