#!/bin/bash
# timeout: 300
# Two hosts, one VM each, one segment owned by h1.  The VM on h2 writes a
# 1 MiB pattern under lock 0; the VM on h1 reads the OLD data while the
# writer still holds the lock, and exactly the new data once it acquires the
# lock after the release.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/vm.sh"
t_need_built
tb_init 2
ds_cluster 2 "seg:2M:1"

vm_start h2 writer seg 'dshm-lock seg acquire --lock 0 && dshm-tool fill -d seg --pattern 7 --length 1M && echo FILLED && read go && dshm-lock seg release --lock 0 && echo RELEASED'
vm_start h1 reader seg 'read go; dshm-tool verify -d seg --pattern 7 --length 1M; echo BEFORE=$?; dshm-lock seg acquire --lock 0 && dshm-tool verify -d seg --pattern 7 --length 1M; echo AFTER=$?; dshm-lock seg release --lock 0'

t_step "the writer on h2 fills 1 MiB under lock 0"
vm_wait h2 writer '^FILLED' 120
t_assert_eq "$(ds_attach h1 seg read --offset 0)" 0 "the owner h1 still has the old data"

t_step "the reader on h1 reads while the writer holds the lock: old data"
vm_send h1 reader go
vm_wait h1 reader '^BEFORE=' 120
t_assert_file_match "$(vm_console h1 reader)" '^BEFORE=1' "verify before the release must fail (old data)"

t_step "the writer releases; the reader acquires and reads the new data"
vm_send h2 writer go
vm_wait h2 writer '^RELEASED' 120
vm_wait h1 reader '^AFTER=' 120
t_assert_file_match "$(vm_console h1 reader)" '^AFTER=0' "verify after the release"
t_assert_file_match "$(vm_console h1 reader)" '^verify OK .*length=1048576' "the reader verified all 1 MiB"
for vm in h1:reader h2:writer; do
    vm_wait "${vm%:*}" "${vm#*:}" '^DSHM-CMD-EXIT=' 60
    t_assert_eq "$(vm_status "${vm%:*}" "${vm#*:}")" 0 "guest command of ${vm#*:}"
done
ds_ctl h1 segments
t_say "ok"
