#!/bin/bash
# timeout: 120
# Peer authentication (docs/protocol.md section 2.1).  h2 owns "seg"; h1
# dials it.  A process on h1 that connects to h2's peer port without the
# key, as host 1 (h1's dshmd stopped): its HELLO is refused, it never
# receives a page (it asks for one) and its WRITEBACK and P_RELEASE change
# nothing (a host-level client reads the page on h2); one with another key
# likewise.  A dshmd started on h1 with another key joins neither side of
# the data path: h2 logs the refusal with h1's address, h1 the failed
# proof of h2 with h2's (each side checks the other's proof), and
# neither sees the other connected; h1's dshmd with the right key is
# connected again.  The key file's mode is checked: a key others may read
# keeps dshmd from starting, with the reason.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 2
ds_cluster 2 "seg:64K:2"
H2=$(ds_peer_addr h2)
H1_IP=$(ds_peer_addr h1)
H1_IP=${H1_IP%:*}
log2=$(tb_log h2 dshmd)

t_step "the owner h2 writes 5151 into page 0 (both hosts authenticated each other)"
grep -q "peer h1 (host 1) up (authenticated)" "$log2" || t_fail "h2 did not log h1 up, authenticated"
t_assert_eq "$(ds_attach h2 seg write --offset 0 --value 5151 --lock 0 >/dev/null; ds_attach h2 seg read --offset 0)" \
    5151 "page 0 on h2"

tb_kill h1 dshmd TERM
ds_wait_peer h2 h1 no

t_step "without the key: HELLO refused, no page, the WRITEBACK changes nothing"
ds_script_spawn h1 nokey python3 "$TOP/tests/lib/fakepeer.py" --no-key "$H2" 1
ds_ask_ok nokey "intrude seg 0 999" >/dev/null
# The status an ERROR refusing the key carries: wire.h's DSHM_E_AUTH.
e_auth=$(sed -n 's/^ *DSHM_E_AUTH *= *\([0-9]*\),.*/\1/p' "$TOP/include/dshm/wire.h")
[ -n "$e_auth" ] || t_fail "DSHM_E_AUTH not found in include/dshm/wire.h"
t_assert_eq "$(ds_ask nokey "counts 3000")" "ok pages=0 errors=1 closed=1 auth=$e_auth" \
    "what the fake peer without the key received (no PAGE; ERROR E_AUTH, closed)"
t_wait_until 5 grep -q "incoming peer connection from $H1_IP:[0-9]*: .*FETCH before authentication" "$log2" ||
    t_fail "h2 did not log the refusal with the address ($(grep -i auth "$log2" | tail -3))"
t_assert_eq "$(ds_attach h2 seg read --offset 0)" 5151 "page 0 on h2 after the fake WRITEBACK"
t_assert_eq "$(ds_stat h2 seg writebacks_applied)" 0 "write-backs applied on h2"
t_assert_eq "$(ds_stat h2 seg fetches_served)" 0 "fetches served by h2"

t_step "another key: the proof does not verify, the same"
head -c 32 /dev/urandom >"$TB_STATE/otherkey"
chmod 600 "$TB_STATE/otherkey"
ds_script_spawn h1 badkey python3 "$TOP/tests/lib/fakepeer.py" --key "$TB_STATE/otherkey" "$H2" 1
ds_ask_ok badkey "intrude seg 0 999" >/dev/null
t_assert_eq "$(ds_ask badkey "counts 3000")" "ok pages=0 errors=1 closed=1 auth=$e_auth" \
    "what the fake peer with another key received"
t_wait_until 5 grep -q "from $H1_IP:[0-9]* (claims to be peer h1, host 1): authentication failed" "$log2" ||
    t_fail "h2 did not log the failed proof with the address"
t_assert_eq "$(ds_stat h2 seg fetches_served)" 0 "fetches served by h2"

t_step "a dshmd on h1 with another key joins nothing"
sed "s|^auth-key-file = .*|auth-key-file = $TB_STATE/otherkey|" "$TB_STATE/h1/dshmd.conf" >"$TB_STATE/h1/wrong.conf"
before=$(grep -c "authentication failed" "$log2")
tb_spawn h1 dshmd-wrong "$DSHMD" --config "$TB_STATE/h1/wrong.conf"
t_wait_until 10 bash -c "[ \$(grep -c 'authentication failed' '$log2') -gt $before ]" ||
    t_fail "h2 did not log the refusal of h1's dshmd"
t_wait_until 10 grep -Eq "peer h2 at $H2: authentication failed|peer h2 .*refused by the peer" "$(tb_log h1 dshmd-wrong)" ||
    t_fail "h1's dshmd did not log that h2 failed authentication ($(tail -3 "$(tb_log h1 dshmd-wrong)"))"
sleep 1  # two more dials (every 2 s after a refusal): still refused
ds_wait_peer h2 h1 no
ds_wait_peer h1 h2 no
grep -q "peer h1 (host 1) up" <(tail -n +"$(grep -c '' "$log2")" "$log2") && t_fail "h2 took h1 up"
t_assert_eq "$(ds_stat h2 seg fetches_served)" 0 "fetches served by h2"
tb_kill h1 dshmd-wrong TERM

t_step "the key file's mode: 0644 is refused with the reason"
cp "$TB_STATE/authkey" "$TB_STATE/openkey" && chmod 644 "$TB_STATE/openkey"
sed "s|^auth-key-file = .*|auth-key-file = $TB_STATE/openkey|" "$TB_STATE/h1/dshmd.conf" >"$TB_STATE/h1/open.conf"
rc=0
tb_run h1 "$DSHMD" --config "$TB_STATE/h1/open.conf" 2>"$TB_STATE/open.err" || rc=$?
t_assert_eq "$rc" 1 "dshmd's exit status with a key others may read"
grep -q "mode 0644 gives group or others access" "$TB_STATE/open.err" || t_fail "no reason given: $(cat "$TB_STATE/open.err")"

t_step "h1's dshmd with the testbed's key: connected again"
tb_spawn h1 dshmd2 "$DSHMD" --config "$TB_STATE/h1/dshmd.conf"
ds_wait_peer h2 h1 yes
ds_wait_peer h1 h2 yes
t_assert_eq "$(ds_attach h1 seg read --offset 0)" 5151 "page 0 read on h1 (fetched from h2)"
t_say "ok"
