#!/bin/bash
# timeout: 120
# Malformed and unexpected input: a "peer" sending garbage, truncated or
# oversize frames, a wrong version or an unknown host id, and a local client
# misusing the protocol.  dshmd answers with an ERROR where it can, closes
# that one connection, logs why, and keeps serving everyone else.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:64K:1"

t_step "garbage at h1's peer port, sent from h3"
out=$(tb_run h3 python3 "$TOP/tests/lib/badframes.py" peer "$(ds_peer_addr h1)")
echo "$out"
for c in peer-http-garbage peer-bad-magic peer-huge-length peer-unknown-type peer-wrong-version peer-unknown-host peer-fetch-before-hello; do
    t_assert_match "$out" "CASE $c closed=yes" "$c: connection closed by dshmd"
done
t_assert_match "$out" "CASE peer-truncated-hello closed=yes" "a truncated HELLO is dropped after the HELLO deadline"
t_assert_match "$out" "CASE peer-wrong-version closed=yes reply=ERROR status=2" "wrong version answered with E_VERSION"

t_step "misbehaving local clients on h1"
out=$(tb_run h1 python3 "$TOP/tests/lib/badframes.py" client /run/dshm/dshmd.sock)
echo "$out"
t_assert_match "$out" "CASE client-garbage closed=yes" "garbage closes the client"
t_assert_match "$out" "CASE client-attach-before-hello closed=yes" "ATTACH before HELLO"
t_assert_match "$out" "CASE client-unknown-segment closed=yes reply=ERROR status=3" "unknown segment: E_NO_SEGMENT"
t_assert_match "$out" "CASE client-acquire-before-uffd closed=no reply=LOCK_FAILED status=9" "acquire before UFFD: E_NOT_ATTACHED"
t_assert_match "$out" "CASE client-uffd-without-fd closed=yes reply=ERROR status=1" "UFFD without its fd"
t_assert_match "$out" "CASE client-ctl-query-as-client closed=yes" "CTL_QUERY from a client"
t_assert_match "$out" "CASE client-segment-name-without-nul closed=yes" "segment name without NUL"

t_step "dshmd on h1 is still up, logged the problems, and still serves"
tb_alive h1 dshmd || t_fail "dshmd on h1 died"
t_assert_file_match "$(tb_log h1 dshmd)" "magic|E_PROTO" "the daemon logged the protocol errors"
ds_attach h2 seg count --offset 0 --iterations 200 --lock 0 >/dev/null
ds_attach h3 seg count --offset 0 --iterations 200 --lock 0 >/dev/null
t_assert_eq "$(ds_attach h1 seg read --offset 0)" 400 "counter after the abuse"
peers=$(ds_ctl h1 peers)
echo "$peers"
t_assert_eq "$(grep -c ' connected ' <<<"$peers")" 2 "h1 still connected to both real peers"
t_say "ok"
