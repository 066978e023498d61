#!/bin/bash
# timeout: 120
# Single-writer marks (docs/protocol.md section 6.1) where messages cross.
#
# The holder's side, against a stand-in owner (tests/lib/fakepeer.py as h1,
# segment a): a grant marks only the pages h2 holds; a revoke is answered
# after everything before it; when h2's last client detaches, its copy and
# its marks go and DROP_COPY tells the owner; a grant that crossed that
# DROP_COPY marks nothing, not even a page h2 fetches again afterwards.
#
# The owner's side (real owner h2, segment b, the stand-in writing as h1):
# a release whose invalidation is still outstanding (h3's dshmd is stopped)
# when its writer's host is lost.  The release stays (it was complete), the
# lock passes on, and neither a mark nor an acknowledgement goes to the
# host that is gone (nor to its next connection); a migrating client's
# flush cut off the same way is acknowledged on that next connection (its
# client still waits for it).
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
ds_cluster 3 "a:64K:1 b:64K:2"  # h1 (the lowest id: it dials h2) is impersonated
H2=$(ds_peer_addr h2)

tb_kill h1 dshmd TERM
ds_wait_peer h2 h1 no
ds_script_spawn h1 fake python3 "$TOP/tests/lib/fakepeer.py" "$H2" 1
ds_wait_peer h2 h1 yes

# sync: everything the stand-in sent before has been handled on h2 (one
# connection, in order; page 15 is never marked).
sync() { t_assert_eq "$(ds_ask fake "revoke a 15")" "ok revoked 15" "h2 answers a revoke"; }

t_step "holder side: h2 fetches page 0 of segment a from the stand-in owner"
ds_script h2 c a
ds_ask_send c "read 0"
t_assert_eq "$(ds_ask fake "serve 111")" "ok page=0" "the owner was asked for page 0"
t_assert_eq "$(ds_ask_recv c 10)" "value 111" "the read on h2"

t_step "a grant of pages 0 and 1 marks page 0 only (h2 does not hold page 1); a revoke clears it"
ds_ask_ok fake "grant a 0 1" >/dev/null
sync
t_assert_eq "$(ds_stat h2 a excl_marked)" 1 "pages marked on h2"
t_assert_eq "$(ds_ask fake "revoke a 0")" "ok revoked 0" "h2 gives the mark up"
t_assert_eq "$(ds_stat h2 a excl_marked)" 0 "pages marked on h2 after the revoke"

t_step "marked again, then h2's last client detaches: copy and marks dropped, DROP_COPY sent"
ds_ask_ok fake "grant a 0" >/dev/null
sync
t_assert_eq "$(ds_stat h2 a excl_marked)" 1 "pages marked on h2"
ds_ask_ok c "quit" >/dev/null
ds_ask_ok fake "await 50" >/dev/null  # DROP_COPY
t_assert_eq "$(ds_stat h2 a local_copy)" False "h2's copy of a"
t_assert_eq "$(ds_stat h2 a excl_marked)" 0 "pages marked on h2 without a copy"

t_step "a grant that crossed the DROP_COPY marks nothing; nor does it stick to page 0 fetched again"
ds_ask_ok fake "grant a 0" >/dev/null
sync
t_assert_eq "$(ds_stat h2 a excl_marked)" 0 "pages marked on h2"
ds_script h2 c2 a
ds_ask_send c2 "read 0"
t_assert_eq "$(ds_ask fake "serve 222")" "ok page=0" "h2 fetched page 0 again"
t_assert_eq "$(ds_ask_recv c2 10)" "value 222" "the read on h2"
t_assert_eq "$(ds_stat h2 a excl_marked)" 0 "pages marked on h2 after the new fetch"
ds_ask_ok fake "grant a 0" >/dev/null
sync
t_assert_eq "$(ds_stat h2 a excl_marked)" 1 "a grant after the fetch marks it"

t_step "owner side: h3 holds page 1 of segment b; the stand-in h1 takes lock 0"
ds_script h3 r3 b
t_assert_eq "$(ds_ask r3 "read 4096")" "value 0" "h3 reads page 1"
t_assert_eq "$(ds_ask fake "acquire b 0 42")" "ok status=0" "the stand-in's P_GRANT"

t_step "h3's dshmd stops; h1 releases page 1 whole (888): the owner waits for h3's INVAL_ACK"
tb_kill h3 dshmd STOP
ds_ask_ok fake "wbfull b 1 888" >/dev/null
ds_wait_stat h2 b writebacks_inflight 1
ds_ask_ok fake "release-nowait b 0 42 1" >/dev/null
ds_wait_stat h2 b writebacks_inflight 0
ds_script h2 w2 b
ds_ask_send w2 "acquire 0"
ds_ask_recv w2 1 && t_fail "the lock was granted while h1 held it"

t_step "h1 is lost before h3 acknowledges: the lock passes on, the release stays"
ds_ask_ok fake "close" >/dev/null
ds_wait_peer h2 h1 no
t_assert_match "$(ds_ask_recv w2 10)" "^ok" "the next waiter on the owner host gets lock 0"
t_assert_eq "$(ds_ask w2 "read 4096")" "value 888" "it reads h1's release"

t_step "h3 resumes and acknowledges: the release completes with no mark for the lost host"
tb_kill h3 dshmd CONT
t_assert_eq "$(ds_ask r3 "read 4096")" "value 888" "h3 reads h1's release (its copy was invalidated)"
t_assert_eq "$(ds_stat h2 b excl_granted)" 0 "marks granted by the owner"
t_assert_eq "$(ds_stat h2 b excl_marked)" 0 "pages marked on the owner"
t_assert_file_match "$(tb_log h2 dshmd)" "by host 1 completed after that host was lost: kept, not acknowledged" \
    "the owner logged the release it kept"
ds_ask_ok w2 "release 0" >/dev/null

t_step "h1 comes back: no stale P_RELEASE_ACK for the connection it lost"
ds_script_spawn h1 fake2 python3 "$TOP/tests/lib/fakepeer.py" "$H2" 1
ds_wait_peer h2 h1 yes
frames=$(ds_ask fake2 "frames 500")
t_assert_match "$frames" "^ok" "the stand-in reads what h2 sends"
[[ " $frames " != *" 46 "* ]] || t_fail "h2 sent a P_RELEASE_ACK on the new connection: $frames"

t_step "the same for a migrating client's flush (page 2 = 999): its P_FLUSH_ACK does reach h1's next connection"
t_assert_eq "$(ds_ask r3 "read 8192")" "value 0" "h3 reads page 2"
tb_kill h3 dshmd STOP
ds_ask_ok fake2 "wbfull b 2 999" >/dev/null
ds_wait_stat h2 b writebacks_inflight 1
ds_ask_ok fake2 "flush-nowait b 43 1" >/dev/null
ds_wait_stat h2 b writebacks_inflight 0
ds_ask_ok fake2 "close" >/dev/null
ds_wait_peer h2 h1 no
tb_kill h3 dshmd CONT
t_assert_eq "$(ds_ask r3 "read 8192")" "value 999" "h3 reads the flushed page"
ds_script_spawn h1 fake3 python3 "$TOP/tests/lib/fakepeer.py" "$H2" 1
ds_wait_peer h2 h1 yes
frames=$(ds_ask fake3 "frames 500")
[[ " $frames " == *" 4d "* ]] || t_fail "no P_FLUSH_ACK on h1's next connection: $frames"
for h in h2 h3; do tb_alive $h dshmd || t_fail "dshmd on $h died"; done
t_say "ok"
