#!/bin/bash
# timeout: 600
# Three hosts, four VMs (two on h2), each running `dshm-tool count` 1,000
# times under one lock on one segment owned by h1: the final counter is
# exact, and the two VMs on h2 share ONE local copy of the segment (which
# h2 drops once both have left).
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/vm.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:1M:1"
N=${DSHM_VM_COUNT:-1000}

for hv in h1:vm1 h2:vm2a h2:vm2b h3:vm3; do
    vm_start "${hv%:*}" "${hv#*:}" seg "dshm-tool count seg --iterations $N --lock 0"
done
t_step "the two VMs on h2 share one local copy while they run"
vm_wait h2 vm2a '^dshm-guest: running' 120
vm_wait h2 vm2b '^dshm-guest: running' 120
dpid=$(tb_pid_of h2 "hostd/dshmd ")
t_assert_eq "$(tb_run h2 ls -l "/proc/$dpid/fd" | grep -c 'memfd:dshm:seg')" 1 "memfds of the segment on h2"

t_step "4 VMs x $N increments"
for hv in h1:vm1 h2:vm2a h2:vm2b h3:vm3; do
    vm_wait "${hv%:*}" "${hv#*:}" '^DSHM-CMD-EXIT=' 500
    t_assert_eq "$(vm_status "${hv%:*}" "${hv#*:}")" 0 "count in ${hv#*:}"
    t_say "   ${hv#*:} on ${hv%:*}: $(grep -m1 '^count done' "$(vm_console "${hv%:*}" "${hv#*:}")")"
done
t_assert_eq "$(ds_attach h3 seg read --offset 0)" $((4 * N)) "final counter"

t_step "h2 served both VMs from its copy, and dropped it once they left"
ds_ctl h2 segments
t_assert_eq "$(ds_stat h2 seg acquires)" $((2 * N)) "locks granted to h2's two VMs"
for i in $(seq 1 50); do [ "$(ds_stat h2 seg local_copy)" = False ] && break; sleep 0.1; done
t_assert_eq "$(ds_stat h2 seg local_copy)" "False" "h2's copy after its VMs left"
t_assert_eq "$(tb_run h2 ls -l "/proc/$dpid/fd" | grep -c 'memfd:dshm:seg')" 0 "memfds of the segment on h2 after its VMs left"
t_say "ok"
