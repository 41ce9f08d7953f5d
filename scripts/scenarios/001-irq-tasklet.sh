#!/usr/bin/env bash
# "When does the use of the devres API harm?", first half: "Registering an interrupt handler with tasklets"
#
# The driver's remove() kills its tasklet, but the IRQ was requested with devm_request_irq(),
# so it stays live until devres runs after remove(). An interrupt in that window schedules the
# tasklet again, and it runs on state devres has freed. The fix frees the IRQ in remove(),
# before tasklet_kill().
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_bound cdev_irq_devm cdev_irq_devm.0
need_bound cdev_irq_fixed cdev_irq_fixed.0

# interrupt_in_window DRIVER: unbind DRIVER.0, stopped between remove() and the devres release;
# raise the device's interrupt there; then let the unbind and any tasklet finish.
interrupt_in_window() {
  local drv=$1 unbinder
  echo 1 > $ctl/hold/unbind_devres
  echo 1 > $ctl/hold/tasklet
  echo "$drv.0" > "$drivers/$drv/unbind" &
  unbinder=$!
  wait_held unbind_devres
  echo 1 > "$ctl/devices/$drv.0/irq"
  tasklet_state=$(cat $ctl/hold/tasklet)
  echo 0 > $ctl/hold/unbind_devres
  wait $unbinder
  echo 0 > $ctl/hold/tasklet
  # a held tasklet runs as soon as it is released: wait until nothing is held any more
  poll "[ \"\$(cat $ctl/hold/tasklet)\" = off ]"
}

say "buggy: devm_request_irq() outlives remove() (cdev_irq_devm)"
mark=$(kmsg_mark)
interrupt_in_window cdev_irq_devm
expect_eq "tasklet scheduled after tasklet_kill()" held "$tasklet_state"
# the softirq code reads the tasklet itself first: it was in the freed devm memory
expect_report "tasklet after devres release" "$mark" tasklet_action_common
# tasklets run in the softirq thread of CPU 0, pid 15 on a freshly booted two-CPU machine
expect_eq "the task" "by task ksoftirqd/0/15" \
  "$(kmsg_since "$mark" | grep -m1 -o 'by task ksoftirqd/0/[0-9]*$')"
expect_taint_b "tasklet after devres release"
rebind cdev_irq_devm cdev_irq_devm.0

say "fixed: devm_free_irq() in remove() before tasklet_kill() (cdev_irq_fixed)"
mark=$(kmsg_mark)
interrupt_in_window cdev_irq_fixed
expect_eq "tasklet after the IRQ was freed" armed "$tasklet_state"
expect_no_report "irq-fixed" "$mark"
rebind cdev_irq_fixed cdev_irq_fixed.0

finish
