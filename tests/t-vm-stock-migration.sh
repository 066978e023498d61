#!/bin/bash
# timeout: 300
# The patched QEMU leaves stock ivshmem alone: a VM with a stock
# ivshmem-plain master region migrates live from h1 to h2 (QEMU's own
# migration, driven through its monitor as a plain-QEMU user would), keeps
# running, and sees the same region contents on the destination.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
t_need_built
tb_init 2
dir1=$TB_STATE/h1 dir2=$TB_STATE/h2
guest='dshm-tool fill --pattern 9 --length 1M >/dev/null; while true; do dshm-tool checksum --length 1M; sleep 1; done'
common() {  # common HOSTDIR: the QEMU arguments shared by source and destination
    local args
    mapfile -t args < <(t_qemu_guest_args "$guest" con0)
    printf '%s\n' "${args[@]}" \
        -chardev "socket,id=con0,path=$1/vm.serial,server=on,wait=off,logfile=$1/vm.console" \
        -object memory-backend-file,id=shm0,mem-path=/dev/shm/plain,size=4M,share=on \
        -device ivshmem-plain,memdev=shm0,master=on \
        -monitor "unix:$1/monitor.sock,server=on,wait=off"
}
mapfile -t src < <(common "$dir1")
mapfile -t dst < <(common "$dir2")
tb_spawn h1 vm "$QEMU_BIN" "${src[@]}"
tb_spawn h2 vm "$QEMU_BIN" "${dst[@]}" -incoming "tcp:$(tb_addr h2):4444"
t_wait_for_file_match "$dir1/vm.console" '^checksum .*fnv1a64=' 120 || t_fail "the source guest did not start"
sum=$(grep -m1 '^checksum' "$dir1/vm.console" | sed 's/.*fnv1a64=\([0-9a-f]*\).*/\1/' | tr -d '\r')
monitor() {  # monitor HOST CMD
    tb_run "$1" python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(2)
s.sendall((sys.argv[2] + "\n").encode()); time.sleep(0.5)
out = b""
try:
    while True:
        c = s.recv(65536)
        if not c: break
        out += c
except socket.timeout: pass
print(out.decode(errors="replace"))' "$TB_STATE/$1/monitor.sock" "$2"
}
t_step "migrate live from h1 to h2"
monitor h1 "migrate -d tcp:$(tb_addr h2):4444" >/dev/null
for i in $(seq 1 60); do
    st=$(monitor h1 "info migrate")
    grep -q 'Migration status: completed' <<<"$st" && break
    grep -q 'Migration status: failed' <<<"$st" && { echo "$st"; t_fail "migration failed"; }
    sleep 1
done
grep -q 'Migration status: completed' <<<"$st" || { echo "$st"; t_fail "migration did not complete"; }
grep -E 'total time|transferred ram' <<<"$st" | sed 's/^/   /'
t_step "the guest runs on h2 with the same region contents"
t_wait_for_file_match "$dir2/vm.console" '^checksum' 60 || t_fail "no output from the guest on the destination"
after=$(grep '^checksum' "$dir2/vm.console" | tail -n 1 | sed 's/.*fnv1a64=\([0-9a-f]*\).*/\1/' | tr -d '\r')
t_assert_eq "$after" "$sum" "region checksum on the destination"
t_say "ok: migrated, checksum $sum on both sides"
