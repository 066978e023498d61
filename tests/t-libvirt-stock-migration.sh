#!/bin/bash
# timeout: 300
# The stock baseline under libvirt: two simulated libvirt hosts; a guest
# whose domain has a STOCK ivshmem-plain region (role='master', 4 MiB) fills
# the region and prints its checksum every second; a plain
# `virsh migrate --live` moves it from h1 to h2; it keeps printing the same
# checksum on h2, h2 runs it and h1 no longer does.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/libvirt.sh"
t_need_built
tb_init 2
lv_start h1
lv_start h2

guest='dshm-tool fill --pattern 9 --length 4M >/dev/null; while true; do dshm-tool checksum --length 4M; sleep 1; done'
plain="    <shmem name='plain' role='master'>
      <model type='ivshmem-plain'/>
      <size unit='M'>4</size>
    </shmem>"
lv_guest_xml vm "$guest" | lv_add_devices "$plain" >"$TB_STATE/vm.xml"
lv_define h1 "$TB_STATE/vm.xml" >/dev/null

t_step "the guest starts on h1 and checksums its region"
lv_virsh h1 start vm >/dev/null
lv_wait_console h1 vm '^checksum .*fnv1a64=' 120
sum=$(grep -m1 '^checksum' "$(lv_console h1 vm)" | sed 's/.*fnv1a64=\([0-9a-f]*\).*/\1/' | tr -d '\r')
t_say "   checksum on h1: $sum"

t_step "virsh migrate --live vm qemu+tcp://h2/system"
ms=$(lv_migrate h1 vm h2) || t_fail "virsh migrate failed"
t_say "   wall time ${ms} ms; $(lv_jobinfo h1 vm | tr '\n' ' ')"
t_assert_eq "$(lv_virsh h2 domstate vm)" running "state of vm on h2"
running_h1=$(lv_virsh h1 list --name)
[ -z "$running_h1" ] || t_fail "h1 still runs: $running_h1"
t_assert_eq "$(lv_virsh h2 list --name)" vm "domains running on h2"

t_step "the guest runs on h2 and sees the same region contents"
lv_wait_console h2 vm '^checksum' 60
# Two more checksums, so that the guest demonstrably keeps running.
for i in $(seq 1 300); do
    [ "$(grep -c '^checksum' "$(lv_console h2 vm)")" -ge 3 ] && break
    sleep 0.1
done
mapfile -t sums < <(sed -n 's/^checksum .*fnv1a64=\([0-9a-f]*\).*/\1/p' "$(lv_console h2 vm)" | tr -d '\r')
[ ${#sums[@]} -ge 3 ] || t_fail "only ${#sums[@]} checksum(s) from the guest on h2"
for s in "${sums[@]}"; do t_assert_eq "$s" "$sum" "region checksum on h2"; done
t_say "ok: migrated in ${ms} ms, ${#sums[@]} checksums $sum on h2"
