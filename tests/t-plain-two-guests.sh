#!/bin/bash
# timeout: 180
# Two guests on ONE simulated host share a stock ivshmem-plain region: guest A
# writes a 1 MiB pattern with dshm-tool and then a marker word; guest B, running
# at the same time, waits for the marker and verifies every byte.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
t_need_built
tb_init 1

MARK_OFF=$((2 * 1024 * 1024 - 8))
MARK=0x5ca1ab1e
guest() {  # guest NAME COMMAND
    local args
    mapfile -t args < <(t_qemu_guest_args "$2")
    tb_spawn h1 "$1" "$QEMU_BIN" "${args[@]}" \
        -object memory-backend-file,id=shm0,mem-path=/dev/shm/plain-seg,size=2M,share=on \
        -device ivshmem-plain,memdev=shm0
}

t_step "start guest B (reader) and guest A (writer) on h1"
guest vmB "dshm-tool wait --offset $MARK_OFF --value $MARK --timeout 120 && dshm-tool verify --pattern 42 --length 1M"
guest vmA "dshm-tool fill --pattern 42 --length 1M && dshm-tool poke --offset $MARK_OFF --value $MARK"

for vm in vmA vmB; do
    t_wait_for_file_match "$(tb_log h1 $vm)" '^DSHM-CMD-EXIT=' 150 || { cat "$(tb_log h1 $vm)"; t_fail "$vm did not finish"; }
done
logA=$(tb_log h1 vmA) logB=$(tb_log h1 vmB)
t_assert_file_match "$logA" 'ivshmem\[0\] .* bar2=2097152 .*plain' "guest A sees the ivshmem-plain device"
t_assert_eq "$(t_guest_exit_status "$logA")" 0 "guest A's command"
t_assert_eq "$(t_guest_exit_status "$logB")" 0 "guest B's command"
t_assert_file_match "$logB" '^wait OK' "guest B saw the marker"
sumA=$(sed -n 's/^filled .*checksum=\([0-9a-f]*\).*/\1/p' "$logA")
sumB=$(sed -n 's/^verify OK .*checksum=\([0-9a-f]*\).*/\1/p' "$logB")
[ -n "$sumA" ] || t_fail "guest A printed no checksum"
t_assert_eq "$sumB" "$sumA" "checksum of the 1 MiB read by B vs written by A"
t_say "ok: guest B read back exactly the 1 MiB guest A wrote (fnv1a64 $sumA)"
