#!/bin/bash
# timeout: 90
# A VM migrating away (MIGRATE_OUT) has its changes written back to the
# owner (P_FLUSH) and waits for the owner's P_FLUSH_ACK.  When the owner is
# lost meanwhile, the host waits ack-timeout-ms (1 s here) for that
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
need_built
tb_init 2
dshm_cluster 2 "seg:64K:1" "ack-timeout-ms = 1000"
H2=$(tb_addr h2):$DSHM_PORT

tb_kill h1 dshmd TERM
wait_peer h2 h1 no
# new_owner NAME: a stand-in for h1 (one per connection), the current one.
new_owner() {
    script_spawn h1 "$1" python3 "$TOP/tests/lib/fakepeer.py" "$H2" 1
    wait_peer h2 h1 yes
    owner=$1
}
new_owner o1

# migrating_vm NAME VALUE: a client on h2 that fetched page 0 (111) and
# wrote VALUE into it, then asked to migrate out; sets `id` to the client
# id the owner saw in its P_FLUSH.
migrating_vm() {
    dshm_script h2 "$1" seg
    ask_send "$1" "read 0"
    assert_eq "$(ask $owner "serve 111")" "ok page=0" "the owner was asked for page 0"
    assert_eq "$(ask_recv "$1" 10)" "value 111" "the read on h2"
    ask_ok "$1" "write 0 $2" >/dev/null
    ask_send "$1" "migrate-out"
    local out
    out=$(ask $owner "await-flush")
    assert_match "$out" "^ok client=[0-9]+$" "the owner got the P_FLUSH"
    id=${out#ok client=}
}

step "the owner is lost after the P_FLUSH and acknowledges it on its next connection: the migration goes on"
migrating_vm vm1 222
ask_ok $owner "close" >/dev/null
wait_peer h2 h1 no
new_owner o2
ask_ok $owner "flush-ack seg $id 0" >/dev/null
out=$(ask_recv vm1 10) || fail "vm1: no answer to migrate-out"
assert_match "$out" "^ok token=" "MIGRATE_OUT answered with a hand-off token"
assert_file_match "$(tb_log h2 dshmd)" "owner lost while writing the migrating VM's changes back" \
    "h2 logged that it waits for the acknowledgement"

step "the owner is lost and never acknowledges: MIGRATE_OUT fails with E_OWNER_LOST within ack-timeout-ms"
migrating_vm vm2 333
ask_ok $owner "close" >/dev/null
t0=$(date +%s%N)
out=$(ask_recv vm2 10) || fail "vm2: no answer to migrate-out (the migration hangs)"
ms=$((($(date +%s%N) - t0) / 1000000))
assert_match "$out" "^error .*E_OWNER_LOST" "MIGRATE_OUT fails"
[ "$ms" -ge 500 ] || fail "failed after $ms ms, before ack-timeout-ms"
say "   failed after $ms ms"
assert_file_match "$(tb_log h2 dshmd)" "no acknowledgement of its write-back from the owner within 1000 ms" \
    "h2 logged why"

assert_file_no_match "$(tb_log h2 dshmd)" "\\(vm2\\) migrated away" "vm2 stayed (no tombstone for a destination)"

step "the owner refuses a write-back (E_NOT_OWNER): MIGRATE_OUT fails the same way, no tombstone"
new_owner o3
migrating_vm vm3 555
ask_ok $owner "flush-ack seg $id 12" >/dev/null
out=$(ask_recv vm3 10) || fail "vm3: no answer to migrate-out"
assert_match "$out" "^error .*E_NOT_OWNER" "MIGRATE_OUT fails"
assert_file_match "$(tb_log h2 dshmd)" "client [0-9]+ \\(vm3\\): closed: E_NOT_OWNER" "h2 closed vm3's connection"
assert_file_no_match "$(tb_log h2 dshmd)" "\\(vm3\\) migrated away" "vm3 stayed (no tombstone for a destination)"

step "h2 goes on serving: a new client reads page 1"
dshm_script h2 vm4 seg
ask_send vm4 "read 4096"
assert_eq "$(ask $owner "serve 444")" "ok page=1" "h2 fetched page 1"
assert_eq "$(ask_recv vm4 10)" "value 444" "the read on h2"
tb_alive h2 dshmd || fail "dshmd on h2 died"
say "ok"
