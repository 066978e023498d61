#!/bin/bash
# timeout: 300
# dsm guests under libvirt: a dshmd cluster of two hosts with libvirtd on
# each.
#   1. A domain written by `dshmctl domain-xml` (one dsm segment owned by
#      h1) starts with `virsh start` on h2, counts 200 times under lock 0 and
#      finishes; the owner h1 holds the right value.
#   2. A running dsm guest moves h2 -> h1 with a plain
#      `virsh migrate --live` and keeps running there: its console goes on.
#      (Lock handover across a migration is not checked here.)
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/libvirt.sh"
t_need_built
tb_init 2
ds_cluster 2 "seg:1M:1"
lv_start h1
lv_start h2

t_step "a dshmctl domain-xml domain counts 200 times under lock 0 on h2"
lv_guest_xml counter 'dshm-tool count seg --iterations 200 --lock 0' --segment seg >"$TB_STATE/counter.xml"
lv_define h2 "$TB_STATE/counter.xml" >/dev/null
lv_virsh h2 start counter >/dev/null
lv_wait_console h2 counter '^DSHM-CMD-EXIT=' 180
t_assert_file_match "$(lv_console h2 counter)" '^count done iterations=200 last=200 ' "the guest's count"
t_assert_eq "$(t_guest_exit_status "$(lv_console h2 counter)")" 0 "exit status of the guest command"
t_assert_eq "$(ds_attach h1 seg read --offset 0)" 200 "the counter at the owner h1"
qemu_log=$(lv_hostpath h2 /var/log/libvirt/qemu/counter.log)
t_assert_file_match "$qemu_log" 'ivshmem-doorbell.*"dsm":true,"segment":"seg"' "the QEMU command line libvirt ran"
t_say "   libvirt taints the domain: $(sed -n 's/.* is tainted: //p' "$qemu_log" | sort -u | tr '\n' ' ')"

t_step "a running dsm guest migrates live h2 -> h1 and keeps running"
lv_guest_xml ticker 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.5; done' --segment seg >"$TB_STATE/ticker.xml"
lv_define h2 "$TB_STATE/ticker.xml" >/dev/null
lv_virsh h2 start ticker >/dev/null
lv_wait_console h2 ticker '^tick 3' 120
ms=$(lv_migrate h2 ticker h1) || t_fail "virsh migrate failed"
t_say "   wall time ${ms} ms; $(lv_jobinfo h2 ticker | tr '\n' ' ')"
t_assert_eq "$(lv_virsh h1 domstate ticker)" running "state of ticker on h1"
running_h2=$(lv_virsh h2 list --name)
[ -z "$running_h2" ] || t_fail "h2 still runs: $running_h2"
last_h2=$(sed -n 's/^tick \([0-9]*\).*/\1/p' "$(lv_console h2 ticker)" | tail -n 1)
lv_wait_console h1 ticker '^tick [0-9]' 60
first_h1=$(sed -n 's/^tick \([0-9]*\).*/\1/p' "$(lv_console h1 ticker)" | head -n 1)
[ "$first_h1" -gt "$last_h2" ] || t_fail "the first tick on h1 ($first_h1) does not follow the last on h2 ($last_h2)"
lv_wait_console h1 ticker "^tick $((first_h1 + 4))([^0-9]|\$)" 60
t_say "   ticks up to $last_h2 on h2, from $first_h1 on h1"
ds_ctl h1 segments
t_say "ok"
