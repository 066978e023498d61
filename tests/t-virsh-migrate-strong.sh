#!/bin/bash
# timeout: 300
# Strong link (issue 5): the VM on h2 is the dominant writer of a segment
# owned by h1; `virsh migrate --live` moves it to h3 and ownership follows
# it (every host's dshmctl shows owner 3 with the reason), while the VM on
# h1 keeps counting.  The counter ends exact, and afterwards h3 serves the
# faults as owner: h1 serves none.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/libvirt.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:1M:1" '[policy]\nreport-ms = 200'
for h in h1 h2 h3; do lv_start $h; done

lv_vm_start h2 writer seg 'for i in $(seq 1 150); do dshm-tool count seg --iterations 50 --lock 0 >/dev/null || exit 1; echo "batch $i"; done'
lv_vm_start h1 other seg 'for i in $(seq 1 40); do dshm-tool count seg --iterations 2 --lock 0 >/dev/null || exit 1; echo "slow $i"; sleep 0.5; done'

t_step "the writer on h2 dominates; it migrates to h3 with virsh"
lv_vm_wait writer '^batch 10[^0-9]' 120
lv_vm_wait other '^slow 2[^0-9]' 120
ds_wait_view h1 writer "strong most-active"  # the owner has h2's report
ds_ctl h1 stats | sed -n '/every host/,$p' | sed 's/^/   /'
ms=$(lv_migrate h2 writer h3) || t_fail "virsh migrate failed"
t_say "   virsh migrate --live took $ms ms; writer at $(grep -c '^batch' "$(lv_vm_console writer)") batches"

t_step "ownership moved to h3; every host knows it, with the reason"
for h in h1 h2 h3; do
    for i in $(seq 1 50); do [ "$(ds_stat $h seg owner)" = 3 ] && break; sleep 0.1; done
    t_assert_eq "$(ds_stat $h seg owner)" 3 "owner as $h sees it"
done
r=$(ds_stat h1 seg owner_reason)
t_say "   h1: $r"
t_assert_match "$r" "writer.*strongly linked.*most active" "the reason"
served_h1=$(ds_stat h1 seg fetches_served)

t_step "both VMs finish; the counter is exact"
lv_vm_wait writer '^batch 150[^0-9]' 300
lv_vm_wait other '^slow 40[^0-9]' 120
lv_vm_wait writer '^DSHM-CMD-EXIT=' 30
lv_vm_wait other '^DSHM-CMD-EXIT=' 30
t_assert_eq "$(lv_vm_status writer)" 0 "the writer's exit status"
t_assert_eq "$(lv_vm_status other)" 0 "the other VM's exit status"
t_assert_eq "$(ds_attach h3 seg read --offset 0)" $((150 * 50 + 40 * 2)) "the counter"

t_step "h3 serves faults as owner; h1 no longer does"
served_h3=$(ds_stat h3 seg fetches_served)
ds_attach h2 seg read --offset 0 >/dev/null
ds_attach h2 seg read --offset 8192 >/dev/null
t_assert_eq "$(ds_stat h1 seg fetches_served)" "$served_h1" "fetches served by h1 since the move"
[ "$(ds_stat h3 seg fetches_served)" -gt "$served_h3" ] || t_fail "h3 served no fetch"
t_say "   fetches served since the move: h1 0, h3 $(( $(ds_stat h3 seg fetches_served) - served_h3 )) (reads on h2)"
ds_ctl h3 segments
t_say "ok"
