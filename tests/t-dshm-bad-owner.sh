#!/bin/bash
# timeout: 90
# An owner that sends an INVALIDATE naming a page out of range: the host
# closes that connection without acting on any page of the message, then
# (its owner lost) drops its clean copies; nothing stale is read afterwards:
# the next read of the page faults and fetches it again once the owner is
# back.  The owner h1 is impersonated by tests/lib/fakepeer.py (h1 is the
# lowest id: it dials h2).
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 2
ds_cluster 2 "seg:64K:1"
H2=$(ds_peer_addr h2)

tb_kill h1 dshmd TERM
ds_wait_peer h2 h1 no
ds_script_spawn h1 owner python3 "$TOP/tests/lib/fakepeer.py" "$H2" 1
ds_wait_peer h2 h1 yes
ds_script h2 c seg

t_step "h2 fetches page 0 from the stand-in owner: 111"
ds_ask_send c "read 0"
t_assert_eq "$(ds_ask owner "serve 111")" "ok page=0" "the owner was asked for page 0"
t_assert_eq "$(ds_ask_recv c 10)" "value 111" "the read on h2"
t_assert_eq "$(ds_stat h2 seg valid_pages)" 1 "valid pages on h2"

t_step "INVALIDATE of page 0 and of page 99999: h2 closes the connection, acting on neither"
t_assert_eq "$(ds_ask owner "inval seg 0 99999")" "ok closed" "the owner's connection"
ds_wait_peer h2 h1 no
grep -q "page 99999 out of range" "$(tb_log h2 dshmd)" || t_fail "h2 did not log why it closed the connection"
t_assert_eq "$(ds_stat h2 seg valid_pages)" 0 "valid pages on h2 once its owner is lost"

t_step "the owner is back with page 0 = 222: h2's next read faults and fetches it"
ds_ask_ok owner "connect" >/dev/null
ds_wait_peer h2 h1 yes
ds_ask_send c "read 0"
t_assert_eq "$(ds_ask owner "serve 222")" "ok page=0" "h2 fetched page 0 again (a stale copy would be read without a fetch)"
t_assert_eq "$(ds_ask_recv c 10)" "value 222" "the read on h2"
t_say "ok"
