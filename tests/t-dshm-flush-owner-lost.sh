#!/bin/bash
# timeout: 120
# A VM migrating away (MIGRATE_OUT) has its changes written back to the
# owner (P_FLUSH) and waits for the owner's P_FLUSH_ACK.  When the owner is
# lost meanwhile, the host waits ack-timeout-ms (4 s here: the new connection must come within it on a loaded machine) for that
# acknowledgement on a later connection: given, the migration goes on;
# not given (the P_FLUSH was lost with the connection, or the owner's
# dshmd died), MIGRATE_OUT fails with E_OWNER_LOST instead of hanging the
# source VM, whose vCPUs are stopped meanwhile (docs/protocol.md 8, 11).
# A failed migration leaves the VM where it was: no tombstone keeps its
# locks for a destination (as also when the owner refuses the write-back).
# The owner h1 is impersonated by tests/lib/fakepeer.py (h1 is the lowest
# id: it dials h2).
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 2
ds_cluster 2 "seg:64K:1" "ack-timeout-ms = 4000"
H2=$(ds_peer_addr h2)

tb_kill h1 dshmd TERM
ds_wait_peer h2 h1 no
# new_owner NAME: a stand-in for h1 (one per connection), the current one.
new_owner() {
    ds_script_spawn h1 "$1" python3 "$TOP/tests/lib/fakepeer.py" "$H2" 1
    ds_wait_peer h2 h1 yes
    owner=$1
}
new_owner o1

# migrating_vm NAME VALUE: a client on h2 that fetched page 0 (111) and
# wrote VALUE into it, then asked to migrate out; sets `id` to the client
# id the owner saw in its P_FLUSH.
migrating_vm() {
    ds_script h2 "$1" seg
    ds_ask_send "$1" "read 0"
    t_assert_eq "$(ds_ask $owner "serve 111")" "ok page=0" "the owner was asked for page 0"
    t_assert_eq "$(ds_ask_recv "$1" 10)" "value 111" "the read on h2"
    ds_ask_ok "$1" "write 0 $2" >/dev/null
    ds_ask_send "$1" "migrate-out"
    local out
    out=$(ds_ask $owner "await-flush")
    t_assert_match "$out" "^ok client=[0-9]+$" "the owner got the P_FLUSH"
    id=${out#ok client=}
}

t_step "the owner is lost after the P_FLUSH and acknowledges it on its next connection: the migration goes on"
migrating_vm vm1 222
ds_ask_ok $owner "close" >/dev/null
ds_wait_peer h2 h1 no
new_owner o2
ds_ask_ok $owner "flush-ack seg $id 0" >/dev/null
out=$(ds_ask_recv vm1 10) || t_fail "vm1: no answer to migrate-out"
t_assert_match "$out" "^ok token=" "MIGRATE_OUT answered with a hand-off token"
t_assert_file_match "$(tb_log h2 dshmd)" "owner lost while writing the migrating VM's changes back" \
    "h2 logged that it waits for the acknowledgement"

t_step "the owner is lost and never acknowledges: MIGRATE_OUT fails with E_OWNER_LOST within ack-timeout-ms"
migrating_vm vm2 333
ds_ask_ok $owner "close" >/dev/null
t0=$(date +%s%N)
out=$(ds_ask_recv vm2 10) || t_fail "vm2: no answer to migrate-out (the migration hangs)"
ms=$((($(date +%s%N) - t0) / 1000000))
t_assert_match "$out" "^error .*E_OWNER_LOST" "MIGRATE_OUT fails"
[ "$ms" -ge 2000 ] || t_fail "failed after $ms ms, before ack-timeout-ms"
t_say "   failed after $ms ms"
t_assert_file_match "$(tb_log h2 dshmd)" "no acknowledgement of its write-back from the owner within 4000 ms" \
    "h2 logged why"

t_assert_file_no_match "$(tb_log h2 dshmd)" "\\(vm2\\) migrated away" "vm2 stayed (no tombstone for a destination)"

t_step "the owner refuses a write-back (E_NOT_OWNER): MIGRATE_OUT fails the same way, no tombstone"
new_owner o3
migrating_vm vm3 555
ds_ask_ok $owner "flush-ack seg $id 12" >/dev/null
out=$(ds_ask_recv vm3 10) || t_fail "vm3: no answer to migrate-out"
t_assert_match "$out" "^error .*E_NOT_OWNER" "MIGRATE_OUT fails"
t_assert_file_match "$(tb_log h2 dshmd)" "client [0-9]+ \\(vm3\\): closed: E_NOT_OWNER" "h2 closed vm3's connection"
t_assert_file_no_match "$(tb_log h2 dshmd)" "\\(vm3\\) migrated away" "vm3 stayed (no tombstone for a destination)"

t_step "h2 goes on serving: a new client reads page 1"
ds_script h2 vm4 seg
ds_ask_send vm4 "read 4096"
t_assert_eq "$(ds_ask $owner "serve 444")" "ok page=1" "h2 fetched page 1"
t_assert_eq "$(ds_ask_recv vm4 10)" "value 444" "the read on h2"
tb_alive h2 dshmd || t_fail "dshmd on h2 died"
t_say "ok"
