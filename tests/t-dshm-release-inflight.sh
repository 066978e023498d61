#!/bin/bash
# timeout: 120
# The owner applies a remote release's write-backs as they arrive, before the
# P_RELEASE that says whether the release is accepted (docs/protocol.md
# section 6).  Meanwhile other hosts are served the released content, not
# the write-backs; a release cut off half-way (its host vanished), one made
# by a host that does not hold the lock, and one whose P_RELEASE does not
# match its write-backs are all undone exactly; releases after them work.
# A host that does not acknowledge an invalidation within ack-timeout-ms is
# disconnected, and the release completes without it.
# A stand-in for h1 (tests/lib/fakepeer.py) sends the write-backs, so the
# release can stop wherever the test wants.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
# owner h2; h1 (the lowest id: it dials h2) is impersonated
DSHM_CONF_h2="ack-timeout-ms = 1000" ds_cluster 3 "seg:64K:2"
H2=$(ds_peer_addr h2)

# read_all HOST: the values at the three offsets the test uses.
read_all() {
    local o out=""
    for o in 0 4096 4104 8192; do out+="$(ds_attach "$1" seg read --offset $o) "; done
    echo "$out"
}

t_step "released content, written on the owner h2: page 0 = 111, page 1 = 222 (then zeros), page 2 = 333"
ds_attach h2 seg write --offset 0 --value 111 --lock 0
ds_attach h2 seg write --offset 4096 --value 222 --lock 0
ds_attach h2 seg write --offset 8192 --value 333 --lock 0
released="111 222 0 333 "
t_assert_eq "$(read_all h3)" "$released" "h3 reads the released content"

t_step "h1's dshmd stops; a stand-in for host 1 takes its place"
tb_kill h1 dshmd TERM
ds_wait_peer h2 h1 no
ds_script_spawn h1 fake1 python3 "$TOP/tests/lib/fakepeer.py" "$H2" 1
ds_wait_peer h2 h1 yes

t_step "a release cut off half-way: two write-backs (RUNS on page 0, FULL on page 1), no P_RELEASE"
ds_ask_ok fake1 "wb seg 0 0 777" >/dev/null
ds_ask_ok fake1 "wbfull seg 1 888" >/dev/null
ds_wait_stat h2 seg writebacks_inflight 2
t_assert_eq "$(read_all h3)" "$released" "meanwhile h3 fetches the released content, not the write-backs"
ds_ask_ok fake1 "close" >/dev/null
ds_wait_stat h2 seg writebacks_inflight 0
ds_wait_stat h2 seg writebacks_reverted 2
t_assert_eq "$(read_all h2)" "$released" "the owner's copy is back to the released content"
t_assert_eq "$(read_all h3)" "$released" "h3 still reads the released content"
t_assert_file_match "$(tb_log h2 dshmd)" "2 write-back\(s\) of host 1 reverted" "the owner logged the revert"

t_step "a release by a client that does not hold the lock"
ds_wait_peer h2 h1 no
ds_script_spawn h1 fake2 python3 "$TOP/tests/lib/fakepeer.py" "$H2" 1
ds_wait_peer h2 h1 yes
ds_ask_ok fake2 "wb seg 0 0 555" >/dev/null
ds_ask_ok fake2 "wbfull seg 2 556" >/dev/null
t_assert_eq "$(ds_ask fake2 "release seg 5 42 2")" "ok status=5" "P_RELEASE_ACK says E_NOT_HELD"
ds_wait_stat h2 seg writebacks_reverted 4
t_assert_eq "$(read_all h2)" "$released" "nothing of it stays at the owner"
t_assert_eq "$(read_all h3)" "$released" "nor reaches h3"

t_step "a P_RELEASE that does not match its write-backs (2 announced, 1 sent)"
ds_ask_ok fake2 "wb seg 0 0 444" >/dev/null
out=$(ds_ask fake2 "release seg 0 0 2")
t_assert_match "$out" "^error .*closed" "the owner closes the connection"
ds_wait_stat h2 seg writebacks_reverted 5
t_assert_eq "$(read_all h2)" "$released" "the owner's copy is unchanged"
t_assert_file_match "$(tb_log h2 dshmd)" "P_RELEASE does not match the write-backs" "the owner logged why"

t_step "releases after all that: h3 writes page 0 under lock 0, h2 and h3 read it"
ds_attach h3 seg write --offset 0 --value 999 --lock 0
t_assert_eq "$(ds_attach h2 seg read --offset 0)" 999 "the owner has h3's release"
t_assert_eq "$(ds_stat h2 seg writebacks_inflight)" 0 "nothing left in flight"

t_step "h3 holds page 2 and stops answering: the owner's release waits ack-timeout-ms (1 s), disconnects h3, completes"
ds_script h3 r3 seg
t_assert_eq "$(ds_ask r3 "read 8192")" "value 333" "h3 reads page 2"
tb_kill h3 dshmd STOP
t0=$(date +%s%N)
ds_attach h2 seg write --offset 8192 --value 777 --lock 0
ms=$((($(date +%s%N) - t0) / 1000000))
tb_kill h3 dshmd CONT
[ "$ms" -ge 900 ] || t_fail "the release completed after $ms ms, before ack-timeout-ms"
t_say "   the release completed after $ms ms"
t_assert_file_match "$(tb_log h2 dshmd)" "peer host 3 did not acknowledge invalidations within 1000 ms" \
    "the owner logged the timeout"
ds_wait_peer h2 h3 yes
t_assert_eq "$(ds_ask r3 "read 8192")" "value 777" "h3 reads the release once back (its copy was dropped)"
tb_alive h2 dshmd || t_fail "dshmd on h2 died"
t_say "ok"
