#!/usr/bin/env bash
# NetBSD tech-kern, 2020: "closing pad(4) before audio(4) causes panic" -- the NetBSD answer.
#
# Detach must (a) make every open file invalid, (b) wait for the operations in flight to
# drain, (c) only then free the softc; file operations on an invalid file fail with ENXIO and
# close always works. "make sure sc_dying prevents long waits": a read waiting for data is
# woken with EIO and the detach does not wait for data; a read past its wait (copying) is
# waited for.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_bound cdev_revoke cdev_revoke.0

mark=$(kmsg_mark)
taint_before=$(taint)
exec 3<>dev/revoke0

say "a read waiting for data is ended by the detach"
tmp=$(mktemp)
head -c 5 <&3 2> "$tmp" &
reader=$!
wait_readers cdev_revoke.0 1
echo cdev_revoke.0 > $drivers/cdev_revoke/unbind
expect_eq "unbind with a reader waiting" 0 "$?"
wait $reader
expect_eq "the waiting read" "Input/output error" "$(grep -o 'Input/output error' "$tmp")"

say "the revoked file"
expect_error "read after detach" "No such device or address" head -c 1 <&3
expect_error "write after detach" "No such device or address" bash -c 'echo x >&3'
exec 3<&-
ok "close after detach returned"
rebind cdev_revoke cdev_revoke.0

say "a read that is copying holds the detach until it is done"
echo -n hello > $ctl/devices/cdev_revoke.0/feed
echo 1 > $ctl/hold/read
head -c 5 dev/revoke0 > "$tmp" &
reader=$!
wait_held read
echo cdev_revoke.0 > $drivers/cdev_revoke/unbind &
unbinder=$!
wait_unbinding cdev_revoke.0
expect_eq "unbind while the read is in flight" waiting "$(in_flight $unbinder)"
echo 0 > $ctl/hold/read
wait $reader
expect_eq "the read in flight completes" hello "$(cat "$tmp")"
wait $unbinder
expect_eq "unbind after the drain" 0 "$?"
rm -f "$tmp"
expect_no_report "revoke" "$mark"
expect_eq "taint" "$taint_before" "$(taint)"
rebind cdev_revoke cdev_revoke.0

finish
