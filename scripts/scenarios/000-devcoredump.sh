#!/usr/bin/env bash
# Rodrigo Vivi, 2024 (not merged): "devcoredump: Remove devcoredump device if failing device is gone"
#
# A device coredump outlives the device it describes. Four behaviours, one device each:
#   legacy (before v6.10)  the dump stays after unbind; reading it runs the driver's read
#                          callback on freed state; rmmod fails until the dump is gone
#   put    (v6.10-v6.17)   the driver deletes its dump at unbind with dev_coredump_put(); with
#                          that era's locking, lockdep finds a three-way lock cycle
#   fixed  (2025)          the same, with the fixed locking: clean
#   seed   (the patch)     dumps are devres of the failing device: a driver that unbinds and
#                          rebinds to recover loses the dump it just took, and a driver that
#                          passes THIS_MODULE still cannot be removed while its dump lives
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

class=sys/class/devcoredump
coredump() { echo 1 > "sys/devices/platform/$1/coredump"; }
# dump_of DEVICE: the devcdN of DEVICE's dump, or nothing
dump_of() { basename "$(readlink "sys/devices/platform/$1/devcoredump" 2>/dev/null)" 2>/dev/null; }
wait_gone() { poll "[ ! -e $class/$1 ]"; }

[ "$(cat $class/disabled)" = 0 ] ||
  needs "device coredumps enabled ($class/disabled is 1, and it only goes one way: remount)"
for era in legacy put fixed seed; do
  dcd=$(dump_of "dump_$era.0")
  if [ -n "$dcd" ]; then  # a dump left by an earlier user: any write deletes it
    echo 1 > "$class/$dcd/data"
    wait_gone "$dcd" || needs "the dump $dcd of dump_$era.0 gone, and deleting it failed"
  fi
  need_bound "dump_$era" "dump_$era.0"
done
echo 1 > $ctl/debug_locks

say "legacy: the dump outlives the unbind"
mark=$(kmsg_mark)
coredump dump_legacy.0
dcd=$(dump_of dump_legacy.0)
expect_eq "module reference held by the dump" 1 "$(cat sys/module/dump_legacy/refcnt)"
echo dump_legacy.0 > $drivers/dump_legacy/unbind
expect_eq "dump after unbind" present "$([ -e $class/$dcd ] && echo present || echo absent)"
cat $class/$dcd/data > /dev/null
expect_report "read after unbind" "$mark" dumper_coredump_read
expect_taint_b "read after unbind"
expect_error "rmmod while the dump exists" "Resource temporarily unavailable" \
  bash -c "echo dump_legacy > $ctl/delete_module"
echo 1 > $class/$dcd/data
wait_gone "$dcd" && ok "a write deletes the dump" || fail "the dump was not deleted"
expect_eq "module reference after the dump" 0 "$(cat sys/module/dump_legacy/refcnt)"
rebind dump_legacy dump_legacy.0

# write_then_unbind ERA: one dump deleted by a write (from the work), the next by
# dev_coredump_put() at unbind; prints "step failed: ..." lines, then the log since the start.
write_then_unbind() {
  local era=$1 mark dcd
  echo 1 > $ctl/debug_locks  # an earlier report or taint turned lock debugging off
  mark=$(kmsg_mark)
  coredump "dump_$era.0"
  dcd=$(dump_of "dump_$era.0")
  echo 1 > "sys/devices/platform/dump_$era.0/devcoredump/data"
  wait_gone "$dcd" || echo "step failed: a write did not delete the dump"
  coredump "dump_$era.0"
  dcd=$(dump_of "dump_$era.0")
  echo "dump_$era.0" > "$drivers/dump_$era/unbind"
  [ -e "$class/$dcd" ] && echo "step failed: the dump survived the unbind"
  rebind "dump_$era" "dump_$era.0"
  kmsg_since "$mark"
}

say "put (pre-fix locking): a write, then a dump deleted at unbind"
report=$(write_then_unbind put)
expect_eq "steps" "" "$(grep '^step failed' <<<"$report")"
expect_eq "lockdep" "WARNING: possible circular locking dependency detected" \
  "$(grep -m1 -o 'WARNING: possible circular locking dependency detected' <<<"$report")"
# As in the splat of "devcoredump: Fix circular locking dependency with devcd->mutex" (2025)
expect_eq "the chains" "#2 (&devcd->mutex) #1 (kn->active#4) #0 ((work_completion)(&(&devcd->del_wk)->work))" \
  "$(grep '^-> #' <<<"$report" | sed 's/^-> //; s/{[^}]*}-{[0-9]:[0-9]}:$//' | tr '\n' ' ' | sed 's/ $//')"

say "fixed: the same sequence"
report=$(write_then_unbind fixed)
expect_eq "steps" "" "$(grep '^step failed' <<<"$report")"
expect_eq "lockdep" "" "$(grep -o 'circular locking' <<<"$report")"

say "seed: a driver that unbinds and rebinds to recover"
coredump dump_seed.0
dcd=$(dump_of dump_seed.0)
echo dump_seed.0 > $drivers/dump_seed/unbind
echo dump_seed.0 > $drivers/dump_seed/bind
wait_gone "$dcd" && ok "the recovery lost the dump" || fail "the dump survived the recovery"

say "seed: the module of a dump that owns it (THIS_MODULE)"
coredump dump_seed_owner.0
dcd=$(dump_of dump_seed_owner.0)
expect_eq "module reference held by the dump" 1 "$(cat sys/module/dump_seed_owner/refcnt)"
# delete_module() checks the count before it would run the exit that unbinds the device
expect_error "rmmod while the dump exists" "Resource temporarily unavailable" \
  bash -c "echo dump_seed_owner > $ctl/delete_module"
echo dump_seed_owner.0 > $drivers/dump_seed_owner/unbind
wait_gone "$dcd" && ok "the unbind removed the dump" || fail "the dump survived the unbind"
echo dump_seed_owner > $ctl/delete_module
expect_eq "rmmod after the unbind" absent \
  "$([ -d sys/module/dump_seed_owner ] && echo present || echo absent)"
echo dump_seed_owner > $ctl/init_module

say "timeout, on the engine's clock"
coredump dump_fixed.0
dcd=$(dump_of dump_fixed.0)
echo 299 > $ctl/advance_clock
expect_eq "after 299 s" present "$([ -e $class/$dcd ] && echo present || echo absent)"
echo 1 > $ctl/advance_clock
expect_eq "after 300 s" absent "$([ -e $class/$dcd ] && echo present || echo absent)"

finish
