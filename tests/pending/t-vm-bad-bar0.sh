#!/bin/bash
# timeout: 400
# A guest writes garbage to every BAR0 offset of its DSM device (32-, 16- and
# 8-bit accesses, invalid lock commands, releases of locks it does not hold):
# its QEMU and dshmd stay up, the device counts the refused requests, and a
# VM on another host counting under the lock meanwhile is unaffected.
source "$(dirname "$0")/../lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/vm.sh"
need_built
tb_init 2
dshm_cluster 2 "seg:64K:1"

fuzz='set -e
dev=$(for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ] && echo $d; done | head -n 1)
base=$(( $(head -n 1 $dev/resource | cut -d" " -f1) ))
echo FUZZ base=$base
off=0
while [ $off -lt 4096 ]; do
  devmem $((base + off)) 32 0xdeadbeef
  devmem $((base + off + 1)) 8 0xff
  devmem $((base + off + 2)) 16 0xffff
  off=$((off + 4))
done
devmem $((base + 0x800 + 4 * 7)) 32 2
devmem $((base + 0x800 + 4 * 9)) 32 1
devmem $((base + 0x800 + 4 * 9)) 32 1
echo FUZZ done
dshm-tool regs -d seg
dshm-tool verify -d seg --pattern 1 --length 8 >/dev/null || true
echo ALIVE'
vm_start h1 counter seg 'dshm-tool count seg --iterations 300 --lock 0'
vm_start h2 fuzzer seg "$fuzz"
vm_wait h2 fuzzer '^ALIVE' 300
vm_wait h1 counter '^DSHM-CMD-EXIT=' 300
assert_eq "$(vm_status h1 counter)" 0 "the counting VM"
assert_eq "$(dshm_attach h2 seg read --offset 0)" 300 "counter"
grep -iE 'errors' "$(vm_console h2 fuzzer)" | head -n 3
tb_alive h1 dshmd || fail "dshmd on h1 died"
tb_alive h2 dshmd || fail "dshmd on h2 died"
vm_wait h2 fuzzer '^DSHM-CMD-EXIT=' 60
assert_eq "$(vm_status h2 fuzzer)" 0 "the fuzzing guest's script (its QEMU survived)"
say "ok"
