#!/usr/bin/env bash
# "When does the use of the devres API harm?", second half: "What hides a driver, for example, a character device?"
#
# A driver allocates its private data with devm_kzalloc() and uses it from its file
# operations. Unbinding frees the data while a file is still open; the next read, write or
# close uses freed memory. The fix keeps the data alive until the last close.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_bound cdev_devm cdev_devm.0
need_bound cdev_refcounted cdev_refcounted.0

say "buggy: devm-allocated private data behind dev/devm0"
mark=$(kmsg_mark)
exec 3<>dev/devm0
echo -n hello > $ctl/devices/cdev_devm.0/feed
expect_eq "read while bound" hello "$(head -c 5 <&3)"
echo cdev_devm.0 > $drivers/cdev_devm/unbind
expect_eq "node after unbind" absent "$([ -e dev/devm0 ] && echo present || echo absent)"
# the driver's "gone" mark is read from the freed memory, where it is still set
expect_error "read after unbind" "No such device" head -c 5 <&3
expect_report "read after unbind" "$mark" chardev_read
expect_taint_b "read after unbind"
mark=$(kmsg_mark)
expect_error "write after unbind" "No such device" bash -c 'echo data >&3'
expect_report "write after unbind" "$mark" chardev_write
mark=$(kmsg_mark)
exec 3>&-
expect_report "close after unbind" "$mark" chardev_release
rebind cdev_devm cdev_devm.0

say "the race inside a read: unbind frees the buffer while a read is in the driver"
mark=$(kmsg_mark)
echo 1 > $ctl/hold/read
echo -n late > $ctl/devices/cdev_devm.0/feed
head -c 4 dev/devm0 > /dev/null &
reader=$!
wait_held read
echo cdev_devm.0 > $drivers/cdev_devm/unbind
echo 0 > $ctl/hold/read
wait $reader
expect_report "copy after unbind" "$mark" __kfifo_out
rebind cdev_devm cdev_devm.0

say "fixed: reference-counted private data behind dev/refcounted0"
mark=$(kmsg_mark)
taint_before=$(taint)
exec 3<>dev/refcounted0
echo cdev_refcounted.0 > $drivers/cdev_refcounted/unbind
expect_error "read after unbind" "No such device" head -c 1 <&3
expect_error "write after unbind" "No such device" bash -c 'echo data >&3'
exec 3>&-
ok "close after unbind returned"
expect_no_report "refcounted" "$mark"
expect_eq "taint" "$taint_before" "$(taint)"
rebind cdev_refcounted cdev_refcounted.0

finish
