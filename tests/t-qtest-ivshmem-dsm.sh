#!/bin/bash
# timeout: 300
# Our qtest for ivshmem-doorbell with dsm=on (qemu-patches/0007), run
# against the patched binary: a scripted dshmd stand-in inside the test
# serves HELLO/ATTACH/UFFD and the lock requests; the test drives the DSM
# registers of BAR0 (registers, lock, refused, invalid, dshmd-gone,
# protocol-error, reset, refusal, hotplug).
source "$(dirname "$0")/lib/common.sh"
need_built
qtest=$BUILD/qemu/build/tests/qtest/ivshmem-dsm-test
[ -x "$qtest" ] || fail "$qtest not built: run 'make qemu'"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The test derives the target from the binary's name, so the firmware paths
# go through a wrapper named qemu-system-x86_64.
cat >"$work/qemu-system-x86_64" <<EOW
#!/bin/sh
exec "$QEMU_BIN" ${QEMU_FIRMWARE[*]} "\$@"
EOW
chmod +x "$work/qemu-system-x86_64"
# QEMU's embedded ivshmem-server can write to a socket that QEMU already
# closed while a test tears down; with SIGPIPE ignored that write fails with
# EPIPE instead of killing the test program.  Pass/fail still comes from the
# program's own TAP lines below.
trap '' PIPE
set +e
out=$(cd "$work" && QTEST_QEMU_BINARY="$work/qemu-system-x86_64" "$qtest" --tap 2>&1)
rc=$?
set -e
echo "$out"
assert_eq "$rc" 0 "exit status of the qtest program"
# Without a userfaultfd the test skips everything: that is not a pass here.
if grep -q '^ok .* # SKIP' <<<"$out"; then
    fail "ivshmem-dsm qtests skipped (no userfaultfd for this user?)"
fi
n_ok=$(grep -c '^ok ' <<<"$out" || true)
n_bad=$(grep -c '^not ok ' <<<"$out" || true)
assert_eq "$n_bad" 0 "failing ivshmem-dsm qtests"
assert_eq "$n_ok" 9 "passing ivshmem-dsm qtests"
for t in registers lock refused invalid dshmd-gone protocol-error reset refusal hotplug; do
    assert_match "$out" "^ok [0-9]+ /x86_64/ivshmem-dsm/$t\$" "qtest $t"
done
