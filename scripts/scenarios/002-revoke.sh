#!/usr/bin/env bash
# NetBSD tech-kern, 2020: "closing pad(4) before audio(4) causes panic" -- the NetBSD answer.
#
# Detach must (a) make every open file invalid, (b) wait for the operations in flight to
# drain, (c) only then free the softc; file operations on an invalid file fail with ENXIO and
# close always works. A read blocked in the driver holds the detach until it completes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_bound cdev_revoke cdev_revoke.0

mark=$(kmsg_mark)
taint_before=$(taint)
exec 3<>dev/revoke0

say "a read in flight holds the detach"
tmp=$(mktemp)
head -c 5 <&3 > "$tmp" &
reader=$!
wait_readers cdev_revoke.0 1
echo cdev_revoke.0 > $drivers/cdev_revoke/unbind &
unbinder=$!
wait_unbinding cdev_revoke.0
expect_eq "unbind while the read is in flight" waiting "$(in_flight $unbinder)"
echo -n hello > $ctl/devices/cdev_revoke.0/feed
wait $reader
expect_eq "the read in flight completes" hello "$(cat "$tmp")"
wait $unbinder
expect_eq "unbind after the drain" 0 "$?"
rm -f "$tmp"

say "the revoked file"
expect_error "read after detach" "No such device or address" head -c 1 <&3
expect_error "write after detach" "No such device or address" bash -c 'echo x >&3'
exec 3<&-
ok "close after detach returned"
expect_no_report "revoke" "$mark"
expect_eq "taint" "$taint_before" "$(taint)"
rebind cdev_revoke cdev_revoke.0

say "a blocked reader interrupted with SIGINT lets the detach finish"
# A background job ignores SIGINT; this reader takes it as a terminal's Ctrl-C would. It
# opens the node itself: a blocked read is interrupted by a signal to the process that opened.
"$python" -c '
import os, signal
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.read(os.open("dev/revoke0", os.O_RDONLY), 1)' &
reader=$!
wait_readers cdev_revoke.0 1
echo cdev_revoke.0 > $drivers/cdev_revoke/unbind &
unbinder=$!
wait_unbinding cdev_revoke.0
kill -INT $reader
wait $unbinder
expect_eq "unbind after the interrupted read" 0 "$?"
rebind cdev_revoke cdev_revoke.0

finish
