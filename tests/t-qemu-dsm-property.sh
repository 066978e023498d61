#!/bin/bash
# timeout: 120
# The patch pipeline: our patched QEMU has the ivshmem-doorbell 'dsm'
# property, off by default; dsm=off behaves as stock (a doorbell device fed
# by the stock ivshmem-server appears in the guest); dsm=on without a valid
# segment name, or as a master, is refused with a clear error.  (dsm=on with
# a dshmd is exercised by the t-vm-* tests and the DSM qtest.)
source "$(dirname "$0")/lib/common.sh"
t_need_built
work=$(mktemp -d)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

t_step "the property exists, defaults to off, and the DSM properties are described"
help=$("$QEMU_BIN" -device ivshmem-doorbell,help)
t_assert_match "$help" 'dsm=<bool> +- .*\(default: false\)' "ivshmem-doorbell help"
t_assert_match "$help" 'dsm=<bool> +- distributed shared memory' "description of dsm in the help"
t_assert_match "$help" 'segment=<str> +- name of the dshm segment' "description of segment in the help"

t_step "stock ivshmem-server + ivshmem-doorbell,dsm=off: the guest sees the device"
"$IVSHMEM_SERVER" -F -S "$work/ivs.sock" -M "dshm-test-ivs-$$" -l 4M -n 1 >"$work/server.log" 2>&1 &
srv=$!
for i in $(seq 1 50); do [ -S "$work/ivs.sock" ] && break; sleep 0.1; done
mapfile -t args < <(t_qemu_guest_args 'dshm-tool list')
timeout 60 "$QEMU_BIN" "${args[@]}" -chardev socket,path="$work/ivs.sock",id=ivs \
    -device ivshmem-doorbell,chardev=ivs,vectors=1,dsm=off >"$work/guest.log" 2>&1 </dev/null
t_assert_eq "$(t_guest_exit_status "$work/guest.log")" 0 "guest command"
t_assert_file_match "$work/guest.log" 'ivshmem\[0\] .*bar2=4194304 .*doorbell' "guest lists the doorbell device"

refused() {  # refused DEVICE-OPTIONS MESSAGE
    set +e
    out=$(timeout 30 "$QEMU_BIN" "${args[@]}" -chardev socket,path="$work/ivs.sock",id=ivs \
        -device "ivshmem-doorbell,chardev=ivs,$1" 2>&1 </dev/null)
    rc=$?
    set -e
    [ $rc != 0 ] && [ $rc != 124 ] || t_fail "QEMU with $1: exit status $rc, expected a clean refusal"
    t_assert_match "$out" "$2" "error message for $1"
}
t_step "dsm=on misconfigurations are refused cleanly"
refused "dsm=on" "dsm=on requires a 'segment'"
refused "dsm=on,segment=bad/name" "segment"
refused "dsm=on,segment=seg,master=on" "master"
t_say "ok"
