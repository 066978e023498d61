#!/bin/bash
# make demo: the dshm demo on simulated hosts.
#
# Stage 1 (foundation): two simulated hosts, one guest on each, booted with
# our patched QEMU; each guest prints what it sees of its ivshmem device.
# h1's guest has a stock ivshmem-plain region; h2's guest an ivshmem-doorbell
# device (dsm=off: stock behaviour) fed by QEMU's ivshmem-server.
source "$(dirname "$0")/../tests/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
need_built

say "dshm demo — accelerator: $(dshm_accel) (override with DSHM_ACCEL=kvm|tcg)"
say ""
step "creating 2 simulated hosts (network + mount + PID namespaces, veth to a lab bridge)"
tb_init 2
for h in h1 h2; do say "   $h: $(tb_addr "$h"), hostname $(tb_run "$h" hostname)"; done

guest_cmd='dshm-tool fill --byte 0x44 --length 16 && dshm-tool dump --length 32'
mapfile -t args < <(qemu_guest_args "$(guest_cmd_append "$guest_cmd")")

step "h1: guest with an ivshmem-plain region of 4 MiB"
tb_spawn h1 vm1 "$QEMU_BIN" "${args[@]}" \
    -object memory-backend-file,id=shm0,mem-path=/dev/shm/demo-seg,size=4M,share=on \
    -device ivshmem-plain,memdev=shm0

step "h2: guest with an ivshmem-doorbell device (dsm=off) served by ivshmem-server"
tb_spawn h2 ivshmem-server "$IVSHMEM_SERVER" -F -S /run/ivshmem.sock -M demo-seg -l 8M -n 1
tb_run h2 bash -c 'for i in $(seq 50); do [ -S /run/ivshmem.sock ] && exit 0; sleep 0.1; done; exit 1' \
    || fail "ivshmem-server did not start on h2"
tb_spawn h2 vm2 "$QEMU_BIN" "${args[@]}" \
    -chardev socket,path=/run/ivshmem.sock,id=ivs -device ivshmem-doorbell,chardev=ivs,vectors=1,dsm=off

for hv in h1:vm1 h2:vm2; do
    h=${hv%:*} vm=${hv#*:}
    wait_for_file_match "$(tb_log "$h" "$vm")" '^DSHM-CMD-EXIT=' 120 || { cat "$(tb_log "$h" "$vm")"; fail "$vm did not finish"; }
done
for hv in h1:vm1 h2:vm2; do
    h=${hv%:*} vm=${hv#*:}
    say ""
    say "== what the guest on $h sees"
    grep -E '^(dshm-guest: (up|ivshmem)|ivshmem\[|filled|0000)' "$(tb_log "$h" "$vm")" | sed 's/^/   /'
    [ "$(guest_exit_status "$(tb_log "$h" "$vm")")" = 0 ] || fail "the guest command on $h failed"
done
say ""
step "tearing the simulated hosts down"
tb_teardown
say "demo finished: both guests saw their ivshmem device."
