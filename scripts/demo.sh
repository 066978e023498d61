#!/bin/bash
# make demo: dshm on three simulated hosts.
#
# h1 owns the segment "counters"; one VM on h2 and one on h3 each add 1 to a
# shared counter 500 times, each time under lock 0 of the segment.  dshmd on
# every host keeps the copies coherent (eager release consistency): at each
# release the VM's changed bytes go to h1, which invalidates the other copy
# before the lock can be granted again.  The final value must be exactly 1000.
# Then libvirt takes over: a real libvirtd per host, two VMs defined from
# `dshmctl domain-xml`, and two plain `virsh migrate --live`: a lightly
# active VM moves and ownership stays; the dominant writer moves and
# ownership follows it.
source "$(dirname "$0")/../tests/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/libvirt.sh"
source "$TOP/tests/lib/vm.sh"
t_need_built
N=${DSHM_DEMO_ITERATIONS:-500}

t_say "dshm demo — guests on different hosts sharing memory through dshmd"
t_say "accelerator: $(t_accel) (override with DSHM_ACCEL=kvm|tcg)"
t_say ""
t_step "1. three simulated hosts (network + mount + PID namespaces on a lab bridge)"
tb_init 3
for h in h1 h2 h3; do t_say "   $h  $(tb_addr "$h")"; done

t_step "2. dshmd on every host; segment 'counters' (64 KiB) owned by h1"
ds_cluster 3 "counters:64K:1" '[policy]\nreport-ms = 200'
t_say "   every daemon is connected to the two others:"
ds_ctl h1 peers | sed 's/^/   /'

t_step "3. a VM on h2 and a VM on h3, each counting to $N under lock 0"
t_say "   guest command: dshm-tool count counters --iterations $N --lock 0"
for hv in h2:vm-a h3:vm-b; do
    vm_start "${hv%:*}" "${hv#*:}" counters "dshm-tool count counters --iterations $N --lock 0"
done
for hv in h2:vm-a h3:vm-b; do
    vm_wait "${hv%:*}" "${hv#*:}" '^DSHM-CMD-EXIT=' 600
done
for hv in h2:vm-a h3:vm-b; do
    line=$(grep -m1 '^count done' "$(vm_console "${hv%:*}" "${hv#*:}")" | tr -d '\r')
    [ -n "$line" ] || t_fail "${hv#*:} did not finish its count"
    t_say "   ${hv#*:} on ${hv%:*}: $(sed -E 's/ (acquire|release)_[a-z0-9_]+=[^ ]*//g' <<<"$line")"
done

t_step "4. the result, read on the owner h1 by a host-side client"
final=$(ds_attach h1 counters read --offset 0)
t_say "   counter = $final (expected $((2 * N)))"
[ "$final" = $((2 * N)) ] || t_fail "the counter is $final, expected $((2 * N))"

t_step "5. what each dshmd saw"
for h in h1 h2 h3; do
    t_say "   -- $h"
    ds_ctl "$h" segments | sed 's/^/   /'
done
t_say ""
t_say "   h1 (the owner) applied the write-backs and sent the invalidations;"
t_say "   h2 and h3 fetched the page on demand and wrote back a few bytes per release."

t_step "6. libvirt on every host; two VMs defined with dshmctl domain-xml"
for h in h1 h2 h3; do lv_start $h; done
t_say "   libvirtd runs on h1, h2, h3 (virsh -c qemu+tcp://hN/system)"
lv_vm_start h2 heavy counters 'for i in $(seq 1 300); do dshm-tool count counters --iterations 50 --lock 1 --offset 8 >/dev/null || exit 1; echo "batch $i"; done'
lv_vm_start h3 light counters 'for i in $(seq 1 20); do dshm-tool count counters --iterations 1 --lock 1 --offset 8 >/dev/null || exit 1; echo "tick $i"; sleep 0.5; done'
t_say "   heavy on h2: 300 x 50 increments of counter 2 under lock 1; light on h3: 20 increments, one every 0.5 s"
lv_vm_wait heavy '^batch 8[^0-9]' 120
lv_vm_wait light '^tick 3[^0-9]' 120
sleep 0.5
t_say "   the owner h1 classifies them:"
ds_ctl h1 stats | sed -n '/every host/,/^HOST/p' | grep -v '^HOST' | sed 's/^/   /'

t_step "7. virsh migrate --live light h3 -> h1: a weakly linked VM, ownership stays"
ms=$(lv_migrate h3 light h1) || t_fail "virsh migrate failed"
sleep 0.3
t_say "   migrated in $ms ms; owner: h$(ds_stat h1 counters owner)"
t_say "   why: $(ds_stat h1 counters owner_reason)"

t_step "8. virsh migrate --live heavy h2 -> h3: the dominant writer, ownership follows it"
ms=$(lv_migrate h2 heavy h3) || t_fail "virsh migrate failed"
for i in $(seq 1 50); do [ "$(ds_stat h1 counters owner)" = 3 ] && break; sleep 0.1; done
for h in h1 h2 h3; do t_say "   $h sees owner: h$(ds_stat $h counters owner)"; done
t_say "   migrated in $ms ms; why: $(ds_stat h3 counters owner_reason)"
lv_vm_wait heavy '^DSHM-CMD-EXIT=' 300
lv_vm_wait light '^DSHM-CMD-EXIT=' 120
final=$(ds_attach h3 counters read --offset 8)
t_say "   counter 2 = $final (expected $((300 * 50 + 20)))"
[ "$final" = $((300 * 50 + 20)) ] || t_fail "counter 2 is $final, expected $((300 * 50 + 20))"
ds_ctl h3 segments | sed 's/^/   /'

t_step "9. tearing the simulated hosts down"
tb_teardown
t_say "demo finished: $((2 * N)) increments from two hosts, none lost; two live migrations"
t_say "with virsh, one that left ownership on h1 and one that moved it to h3."
