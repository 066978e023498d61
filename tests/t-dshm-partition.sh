#!/bin/bash
# timeout: 180
# A partition between a client's host and the segment's owner fails the
# client's waits within peer-timeout-ms instead of for as long as TCP would
# retry (docs/protocol.md section 8, "Bounds").  3 hosts, owner h1,
# peer-timeout-ms = 2000.  The h1<->h3 path is cut by blackhole routes
# inside h1 and h3 (packets dropped silently, as by a partition; the
# h1<->h2 and h2<->h3 paths stay), twice:
#  1. with only an acquire of a client on h3 waiting at h1 (queued behind
#     a holder on h1; the connection idle, no deadline of dshmd's own
#     applies): keepalive and TCP_USER_TIMEOUT find the partition, the
#     acquire fails with E_OWNER_LOST within peer-timeout-ms + margin, a
#     lock request meanwhile fails at once; healed, h1 and h3 reconnect;
#  2. with a release on the wire and a read fault of a page h3 lacks: the
#     release fails with E_OWNER_LOST within peer-timeout-ms + margin; the
#     fault waits (never a zero page) until h1 has been unreachable for
#     peer-timeout-ms more, then its client is failed (ERROR E_OWNER_LOST,
#     closed: QEMU would release its vCPUs); h2 works on meanwhile.
# dshmd never crashes; healed again, a new client on h3 reads h1's data,
# locks, writes and releases.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
PEER_MS=2000
MARGIN_MS=5000 # keepalive probe period, the deadline check's granularity, a loaded machine
ds_cluster 3 "seg:64K:1" "peer-timeout-ms = $PEER_MS"

ds_script h1 holder seg
ds_script h2 c2 seg
ds_script h3 waiter seg
ds_script h3 releaser seg
ds_script h3 reader seg
limit_s=$(((PEER_MS + MARGIN_MS) / 1000))
cut() {
    tb_run h3 ip route add blackhole "$(tb_addr h1)/32"
    tb_run h1 ip route add blackhole "$(tb_addr h3)/32"
    t0=$(date +%s%N)
}
heal() {
    tb_run h3 ip route del blackhole "$(tb_addr h1)/32"
    tb_run h1 ip route del blackhole "$(tb_addr h3)/32"
    t_wait_until 30 _ds_peer_is h3 h1 connected || t_fail "h1 and h3 did not reconnect"
    t_wait_until 30 _ds_peer_is h1 h3 connected || t_fail "h1 and h3 did not reconnect"
}
since_cut() { echo $((($(date +%s%N) - t0) / 1000000)); }

t_step "healthy: h1 writes page 2 (42) and holds lock 1; h3 reads page 0; h3's acquire of lock 1 waits at h1"
ds_ask_ok holder "acquire 3" >/dev/null
ds_ask_ok holder "write 8192 42" >/dev/null
ds_ask_ok holder "release 3" >/dev/null
ds_ask_ok holder "acquire 1" >/dev/null
t_assert_eq "$(ds_ask reader "read 0")" "value 0" "h3 reads page 0"
ds_ask_send waiter "acquire 1"
! ds_ask_recv waiter 0.5 >/dev/null || t_fail "lock 1 granted while h1's client holds it"

t_step "cut h1<->h3 with the connection idle: the waiting acquire fails with E_OWNER_LOST"
cut
out=$(ds_ask_recv waiter "$limit_s") || t_fail "the acquire still waits after $limit_s s"
t_assert_match "$out" "^error .*E_OWNER_LOST" "the queued acquire fails"
ms=$(since_cut)
t_say "   acquire failed after $ms ms"
t_wait_until 10 _ds_peer_is h3 h1 down || t_fail "h3 still sees h1 connected"
t_assert_file_match "$(tb_log h3 dshmd)" "peer h1 \\(host 1\\) lost" "h3 declared h1 lost"
t_assert_match "$(ds_ask waiter "acquire 4" 2)" "^error .*E_OWNER_LOST" \
    "a lock request while h1 is unreachable fails at once"
tb_alive h3 dshmd || t_fail "dshmd on h3 died"
heal
t_say "   reconnected after $(since_cut) ms"
ds_ask_ok holder "release 1" >/dev/null
ds_ask_ok waiter "acquire 1" >/dev/null
ds_ask_ok waiter "release 1" >/dev/null

t_step "cut again with a release on the wire and a fault waiting: the release fails with E_OWNER_LOST"
ds_ask_ok releaser "acquire 0" >/dev/null
ds_ask_ok releaser "write 0 5" >/dev/null
cut
ds_ask_send releaser "release 0"
ds_ask_send reader "read 8192"
out=$(ds_ask_recv releaser "$limit_s") || t_fail "the release still waits after $limit_s s"
t_assert_match "$out" "^error .*E_OWNER_LOST" "the release fails"
ms=$(since_cut)
t_say "   release failed after $ms ms"
tb_alive h3 dshmd || t_fail "dshmd on h3 died"

t_step "h2 is not affected"
ds_ask_ok c2 "acquire 2" >/dev/null
ds_ask_ok c2 "write 16384 77" >/dev/null
ds_ask_ok c2 "release 2" >/dev/null
t_assert_eq "$(ds_ask c2 "read 8192")" "value 42" "h2 reads h1's page"
t_assert_eq "$(ds_ask holder "read 16384")" "value 77" "h1 has h2's release"

t_step "the fault is never answered with a page; its client is failed once h1 stays unreachable"
_stranded() { grep -q "(reader): a fault of this client waits for owner host 1" "$(tb_log h3 dshmd)"; }
t_wait_until $(((3 * PEER_MS + MARGIN_MS) / 1000)) _stranded || t_fail "the faulting client was not failed"
t_say "   faulting client failed after $(since_cut) ms"
t_assert_file_match "$(tb_log h3 dshmd)" "client [0-9]+ \\(reader\\): closed: E_OWNER_LOST" \
    "h3 closed the faulting client's connection with E_OWNER_LOST"
! ds_ask_recv reader 0.2 >/dev/null || t_fail "the fault was answered (a zero page?)"
tb_alive h3 dshmd || t_fail "dshmd on h3 died"

t_step "healed: a new client on h3 works"
heal
ds_script h3 fresh seg
t_assert_eq "$(ds_ask fresh "read 8192")" "value 42" "h3 reads h1's page"
ds_ask_ok fresh "acquire 0" >/dev/null
ds_ask_ok fresh "write 0 9" >/dev/null
ds_ask_ok fresh "release 0" >/dev/null
t_assert_eq "$(ds_ask holder "read 0")" "value 9" "the owner has the new client's release"
tb_alive h1 dshmd || t_fail "dshmd on h1 died"
tb_alive h2 dshmd || t_fail "dshmd on h2 died"
tb_alive h3 dshmd || t_fail "dshmd on h3 died"
t_say "ok"
