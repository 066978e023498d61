#!/bin/bash
# timeout: 120
# The lock and write hand-over of a live migration, on simulated hosts
# without VMs (dshm-attach does what the patched QEMU does: MIGRATE_OUT on
# the source with the vCPUs stopped, ADOPT with the token on the
# destination; docs/protocol.md section 8):
#   - the migrating client's writes made inside its critical section reach
#     the owner at MIGRATE_OUT, before the destination runs;
#   - the destination holds the source's lock (and queue positions) and
#     releases it; a waiter elsewhere then sees every write;
#   - the source host drops its copy once no local client uses the segment;
#   - a migrated-out client nobody adopts loses its locks after
#     adopt-timeout-ms.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:64K:1" "adopt-timeout-ms = 1500"

ds_script h2 src seg
ds_script h3 waiter seg
ds_script h1 reader seg

t_step "the source takes lock 0 and writes two pages; h3 waits for the lock"
ds_ask_ok src "acquire 0" >/dev/null
ds_ask_ok src "write 0 111" >/dev/null
ds_ask_ok src "write 4096 7" >/dev/null
ds_ask_send waiter "acquire 0"
t_assert_eq "$(ds_ask reader "read 0")" "value 0" "h1 reads the old value during the critical section"

t_step "MIGRATE_OUT: the writes reach the owner, the lock stays"
out=$(ds_ask_ok src "migrate-out")
t_assert_match "$out" "pages=2 " "the flush wrote back both pages"
token=$(sed 's/.*token=\([0-9:]*\).*/\1/' <<<"$out")
t_assert_eq "$(ds_ask reader "read 0")" "value 111" "the owner has the migrating client's write"
if ds_ask_recv waiter 1 >/dev/null; then t_fail "the waiter got the lock during the migration"; fi

t_step "ADOPT on h3: the destination holds lock 0; the source goes away"
ds_script h3 dst seg
t_assert_eq "$(ds_ask dst "adopt $token")" "ok held=0 queued=-" "locks handed to the destination"
ds_ask_ok src "quit" >/dev/null
ds_wait_stat h2 seg local_copy False
if ds_ask_recv waiter 1 >/dev/null; then t_fail "the source's exit dropped the migrated lock"; fi
t_assert_eq "$(ds_ask dst "read 0")" "value 111" "the destination reads the source's write"
t_assert_eq "$(ds_stat h2 seg local_copy)" "False" "h2 dropped its copy (no local client left)"

t_step "the destination writes and releases: the waiter on h3 sees every write"
ds_ask_ok dst "write 0 222" >/dev/null
ds_ask_ok dst "release 0" >/dev/null
got=$(ds_ask_recv waiter 10) || t_fail "the waiter never got the lock"
t_assert_eq "$got" "ok" "waiter granted after the destination's release"
t_assert_eq "$(ds_ask waiter "read 0")" "value 222" "write made after the migration"
t_assert_eq "$(ds_ask waiter "read 4096")" "value 7" "write made before the migration"
ds_ask_ok waiter "release 0" >/dev/null

t_step "a migrated-out client nobody adopts loses its lock after adopt-timeout-ms"
ds_script h2 orphan seg
ds_ask_ok orphan "acquire 1" >/dev/null
ds_ask_ok orphan "write 8 5" >/dev/null
ds_ask_ok orphan "migrate-out" >/dev/null
ds_ask_send waiter "acquire 1"
ds_ask_ok orphan "quit" >/dev/null
t0=$(date +%s%N)
got=$(ds_ask_recv waiter 10) || t_fail "the orphaned lock was never dropped"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
t_say "   lock 1 granted to the waiter ${ms} ms after the source exited (adopt-timeout-ms = 1500)"
[ "$ms" -ge 1000 ] || t_fail "the lock was dropped before the adopt timeout (${ms} ms)"
t_assert_eq "$(ds_ask waiter "read 8")" "value 5" "the orphan's flushed write is kept"
ds_ask_ok waiter "release 1" >/dev/null
t_say "ok"
