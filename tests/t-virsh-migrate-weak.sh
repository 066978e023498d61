#!/bin/bash
# timeout: 300
# Weak link (issue 5): VMs on h1 and h2 share a segment owned by h1; the
# lightly active VM on h2 migrates to h3 with a plain `virsh migrate --live`
# while the VM on h1 keeps writing under the lock.  Ownership stays on h1
# (dshmctl says why); the counter ends exact; h2 drops its copy.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/libvirt.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:1M:1" '[policy]\nreport-ms = 200'
for h in h1 h2 h3; do lv_start $h; done

# The busy VM: 150 batches of 50 increments; the light one: 10, a pause, 10.
lv_vm_start h1 busy seg 'for i in $(seq 1 150); do dshm-tool count seg --iterations 50 --lock 0 >/dev/null || exit 1; echo "batch $i"; done'
lv_vm_start h2 light seg 'dshm-tool count seg --iterations 10 --lock 0 >/dev/null || exit 1; echo light-phase-1; sleep 6; dshm-tool count seg --iterations 10 --lock 0 >/dev/null || exit 1; echo light-done'

t_step "the light VM on h2 migrates to h3 while the busy VM on h1 counts"
lv_vm_wait light '^light-phase-1' 120
lv_vm_wait busy '^batch 2[^0-9]' 120
ms=$(lv_migrate h2 light h3) || t_fail "virsh migrate failed"
t_say "   virsh migrate --live took $ms ms; busy VM at $(grep -c '^batch' "$(lv_vm_console busy)") batches"
lv_virsh h3 list | grep -q ' light ' || t_fail "the light VM does not run on h3"
lv_virsh h2 list | grep -q ' light ' && t_fail "the light VM still runs on h2"

t_step "ownership stays on h1, with the reason"
# h1 decides when the destination's ADOPT reaches it, after virsh returns
t_wait_until 20 eval '[[ $(ds_stat h1 seg owner_reason) == *light*weakly* ]]' || true
t_assert_eq "$(ds_stat h1 seg owner)" 1 "owner on h1"
t_assert_eq "$(ds_stat h3 seg owner)" 1 "owner as h3 sees it"
r=$(ds_stat h1 seg owner_reason)
t_say "   h1: $r"
t_assert_match "$r" "light.*weakly linked" "the policy's reason on h1"

t_step "both VMs finish; the counter is exact; h2 dropped its copy"
lv_vm_wait light '^light-done' 120
lv_vm_wait busy '^batch 150[^0-9]' 300
lv_vm_wait light '^DSHM-CMD-EXIT=' 30
lv_vm_wait busy '^DSHM-CMD-EXIT=' 30
t_assert_eq "$(lv_vm_status light)" 0 "the light VM's exit status"
t_assert_eq "$(lv_vm_status busy)" 0 "the busy VM's exit status"
t_assert_eq "$(ds_attach h1 seg read --offset 0)" $((150 * 50 + 20)) "the counter"
t_assert_eq "$(ds_stat h2 seg local_copy)" "False" "h2 keeps no copy once the VM left"
ds_ctl h1 segments
t_say "ok"
