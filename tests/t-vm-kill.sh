#!/bin/bash
# timeout: 300
# A VM killed (kill -9 of its QEMU) while it holds the lock: the VM waiting
# for the lock on another host continues within 1 s, and the segment holds
# what the last completed release left.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/vm.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:64K:1"
ds_attach h1 seg write --offset 0 --value 5 --lock 0

vm_start h2 holder seg 'dshm-lock seg acquire --lock 0 && dshm-tool poke -d seg --offset 0 --value 999 && echo HOLDING && sleep 1000'
vm_start h3 waiter seg 'read go; dshm-lock seg acquire --lock 0 --timeout 60 && echo ACQUIRED && dshm-tool peek -d seg --offset 0 && dshm-lock seg release --lock 0'
vm_wait h2 holder '^HOLDING' 120
vm_send h3 waiter go
ds_wait_stat h1 seg lock_waiters 1 60  # the waiter's ACQUIRE is queued at the owner
grep -q '^ACQUIRED' "$(vm_console h3 waiter)" && t_fail "the waiter got the lock while the holder held it"

t_step "kill -9 the holder's QEMU"
t0=$(date +%s%N)
tb_kill h2 holder KILL
vm_wait h3 waiter '^ACQUIRED' 10
ms=$((($(date +%s%N) - t0) / 1000000))
t_say "   the waiter on h3 had the lock ${ms} ms after kill -9 (console polled every 100 ms)"
[ "$ms" -lt 1000 ] || t_fail "lock handed over after ${ms} ms (limit 1000)"
vm_wait h3 waiter '^DSHM-CMD-EXIT=' 60
t_assert_eq "$(sed -n '/^ACQUIRED/{n;p;q}' "$(vm_console h3 waiter)" | tr -d '\r')" 5 "value the waiter read"
t_assert_eq "$(ds_attach h1 seg read --offset 0)" 5 "value at the owner"
t_assert_eq "$(ds_attach h2 seg read --offset 0)" 5 "value in h2's copy (the dead VM's write rolled back)"
t_say "ok"
