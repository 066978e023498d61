#!/bin/bash
# timeout: 300
# QEMU's own ivshmem test suite, built from the same source tree, run against
# our patched binary: proves the patches leave stock ivshmem intact.
# (single, hotplug, memdev, pair, server, hotplug-q35 with -m slow.)
source "$(dirname "$0")/lib/common.sh"
need_built
qtest=$BUILD/qemu/build/tests/qtest/ivshmem-test
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
out=$(cd "$work" && QTEST_QEMU_BINARY="$work/qemu-system-x86_64" "$qtest" -m slow --tap 2>&1)
rc=$?
set -e
echo "$out"
assert_eq "$rc" 0 "exit status of the qtest program"
n_ok=$(grep -c '^ok ' <<<"$out" || true)
n_bad=$(grep -c '^not ok ' <<<"$out" || true)
assert_eq "$n_bad" 0 "failing ivshmem qtests"
assert_eq "$n_ok" 6 "passing ivshmem qtests"
for t in single hotplug memdev pair server hotplug-q35; do
    assert_match "$out" "^ok [0-9]+ /x86_64/ivshmem/$t\$" "qtest $t"
done
