#!/bin/bash
# timeout: 400
# A guest writes garbage to every BAR0 offset of its DSM device (32-, 16- and
# 8-bit accesses, invalid lock commands, releases of locks it does not hold):
# its QEMU and dshmd stay up, the device counts the refused requests, and a
# VM on another host counting under the lock meanwhile is unaffected.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/vm.sh"
t_need_built
tb_init 2
ds_cluster 2 "seg:64K:1"

fuzz='set -e
off=0
while [ $off -lt 4096 ]; do
  echo "$off 0xdeadbeef 32"; echo "$((off + 1)) 0xff 8"; echo "$((off + 2)) 0xffff 16"; echo "$((off + 3)) 0x5a 8"
  off=$((off + 4))
done >/tmp/garbage
echo "$((0x800 + 4 * 7)) 2 32" >>/tmp/garbage
echo "$((0x800 + 4 * 9)) 1 32" >>/tmp/garbage
echo "$((0x800 + 4 * 9)) 1 32" >>/tmp/garbage
echo "$((0x800 + 4 * 300)) 1 32" >>/tmp/garbage
echo FUZZ start
dshm-tool reg-write -d seg </tmp/garbage
dshm-tool regs -d seg
dshm-tool verify -d seg --pattern 1 --length 8 >/dev/null || true
echo ALIVE'
vm_start h1 counter seg 'dshm-tool count seg --iterations 300 --lock 0'
vm_start h2 fuzzer seg "$fuzz"
vm_wait h2 fuzzer '^ALIVE' 300
vm_wait h1 counter '^DSHM-CMD-EXIT=' 300
t_assert_eq "$(vm_status h1 counter)" 0 "the counting VM"
t_assert_eq "$(ds_attach h2 seg read --offset 0)" 300 "counter"
grep -E 'reg-write|ERRORS|LAST_ERROR|STATE' "$(vm_console h2 fuzzer)"
errors=$(sed -n 's/.*ERRORS *\([0-9]*\).*/\1/p' "$(vm_console h2 fuzzer)" | head -n 1)
[ "${errors:-0}" -gt 1000 ] || t_fail "the device counted ${errors:-no} refused accesses; expected thousands"
t_assert_file_match "$(vm_console h2 fuzzer)" 'STATE +1 \(ready\)' "the device is still attached after the garbage"
tb_alive h1 dshmd || t_fail "dshmd on h1 died"
tb_alive h2 dshmd || t_fail "dshmd on h2 died"
vm_wait h2 fuzzer '^DSHM-CMD-EXIT=' 60
t_assert_eq "$(vm_status h2 fuzzer)" 0 "the fuzzing guest's script (its QEMU survived)"
t_say "ok"
