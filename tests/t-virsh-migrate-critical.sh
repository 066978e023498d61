#!/bin/bash
# timeout: 300
# Migration inside a critical section (issue 5): the guest holds lock 3
# across `virsh migrate --live` h2 -> h3, writes on both sides of it and
# releases on the destination.  A client on h1 that asked for the lock
# meanwhile gets it only after that release, and reads every write.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/libvirt.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:1M:1"
for h in h1 h2 h3; do lv_start $h; done

lv_vm_start h2 cs seg 'dshm-lock seg acquire --lock 3 || exit 1
dshm-tool poke seg --offset 4096 --value 111 && dshm-tool poke seg --offset 65536 --value 112 || exit 1
echo cs-entered; dshm-lock seg status | grep -i "lock 3"
dshm-tool wait seg --offset 0 --value 1 --timeout 120 || exit 1
echo "seen-after-migration $(dshm-tool peek seg --offset 4096) $(dshm-tool peek seg --offset 65536)"
dshm-tool poke seg --offset 8192 --value 222 || exit 1
echo cs-wrote-after; sleep 1
dshm-lock seg release --lock 3 || exit 1
echo cs-released'
ds_script h1 reader seg

t_step "the guest enters its critical section on h2 and writes"
lv_vm_wait cs '^cs-entered' 120
ds_ask_send reader "acquire 3"
if ds_ask_recv reader 1 >/dev/null; then t_fail "h1 got lock 3 while the guest holds it"; fi

t_step "virsh migrate --live h2 -> h3 inside the critical section"
ms=$(lv_migrate h2 cs h3) || t_fail "virsh migrate failed"
t_say "   virsh migrate --live took $ms ms"
lv_virsh h3 list | grep -q ' cs ' || t_fail "the guest does not run on h3"
if ds_ask_recv reader 1 >/dev/null; then t_fail "the migration released lock 3"; fi

t_step "on h3 the guest sees its own writes, writes again and releases"
# The guest waits for word 0 to become 1, a signal released under another
# lock (5): then it writes once more and releases lock 3.
ds_attach h1 seg write --offset 0 --value 1 --lock 5 >/dev/null
lv_vm_wait cs '^cs-released' 60
t_assert_match "$(grep -a '^seen-after-migration' "$(lv_vm_console cs)")" "^seen-after-migration 111 112" \
    "the guest on h3 reads its own writes made on h2"
got=$(ds_ask_recv reader 20) || t_fail "h1 never got lock 3"
t_assert_eq "$got" "ok" "h1's acquire granted after the guest's release"
t_assert_eq "$(ds_ask reader "read 4096")" "value 111" "write made on h2 before the migration"
t_assert_eq "$(ds_ask reader "read 65536")" "value 112" "second write made on h2"
t_assert_eq "$(ds_ask reader "read 8192")" "value 222" "write made on h3 after the migration"
ds_ask_ok reader "release 3" >/dev/null
lv_vm_wait cs '^DSHM-CMD-EXIT=' 30
t_assert_eq "$(lv_vm_status cs)" 0 "the guest's exit status"
t_say "ok"
