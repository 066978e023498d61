#!/bin/bash
# timeout: 120
# A client that dies (kill -9) while holding a lock: the next waiter gets the
# lock within 1 s, and the dead client's unreleased writes never reach the
# owner (nor stay in its own host's copy).  A client that dies while its page
# fault is being served: the page still arrives and is installed, and the
# next reader of that page on its host is not held up.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:64K:1"

for holder_host in h2 h1; do
    t_step "holder on $holder_host (owner is h1), waiter on h3"
    ds_attach h3 seg write --offset 0 --value 5 --lock 0
    tb_spawn "$holder_host" holder "$DSHM_ATTACH" --name holder seg hold --lock 0 --offset 0 --value 999
    t_wait_for_file_match "$(tb_log "$holder_host" holder)" '^holding lock' 20 || t_fail "holder did not get the lock"
    t_assert_eq "$(tb_run "$holder_host" "$DSHM_ATTACH" seg read --offset 0)" 999 "the holder's host sees its write while it holds the lock"
    ds_script h3 "waiter-$holder_host" seg
    ds_ask_send "waiter-$holder_host" "acquire 0"
    if ds_ask_recv "waiter-$holder_host" 1 >/dev/null; then t_fail "the waiter got the lock while it was held"; fi
    t0=$(date +%s%N)
    tb_kill "$holder_host" holder KILL
    got=$(ds_ask_recv "waiter-$holder_host" 5) || t_fail "the waiter did not get the lock after the holder died"
    ms=$((($(date +%s%N) - t0) / 1000000))
    t_assert_eq "$got" "ok" "acquire answer"
    t_say "   lock passed to the waiter ${ms} ms after kill -9 of the holder"
    [ "$ms" -lt 1000 ] || t_fail "lock handed over after ${ms} ms (limit 1000)"
    t_assert_eq "$(ds_ask "waiter-$holder_host" "read 0")" "value 5" "the waiter reads the last released value"
    ds_ask_ok "waiter-$holder_host" "release 0" >/dev/null
    t_assert_eq "$(ds_attach h1 seg read --offset 0)" 5 "the owner's value"
    t_assert_eq "$(tb_run "$holder_host" "$DSHM_ATTACH" seg read --offset 0)" 5 "the dead holder's host copy was rolled back"
done

t_step "a client killed while the owner serves its fault: the page is installed without it"
ds_attach h3 seg write --offset 8192 --value 77 --lock 1
ds_script h2 keeper seg  # keeps h2's copy of the segment (else dropped with its last client)
fetched0=$(ds_stat h2 seg fetches_sent) valid0=$(ds_stat h2 seg valid_pages)
tb_kill h1 dshmd STOP  # the owner holds the FETCH until CONT
trap 'tb_kill h1 dshmd CONT' ERR
tb_spawn h2 faulter "$DSHM_ATTACH" --name faulter seg read --offset 8192
ds_wait_stat h2 seg fetches_sent $((fetched0 + 1))  # the faulting client's FETCH
tb_kill h2 faulter KILL
lists_faulter() { ds_stat h2 seg clients | grep -q faulter; }
t_wait_until 5 eval '! lists_faulter' || t_fail "h2 still lists the killed client"
tb_kill h1 dshmd CONT
trap - ERR
ds_wait_stat h2 seg valid_pages $((valid0 + 1))  # the PAGE arrived with nobody waiting
got=$(tb_run h2 timeout 5 "$DSHM_ATTACH" seg read --offset 8192) || t_fail "a reader on h2 hung on the page whose faulting client died"
t_assert_eq "$got" 77 "the next reader on h2 reads the page"
t_assert_eq "$(ds_stat h2 seg fetches_sent)" $((fetched0 + 1)) "FETCHes from h2 (the page came once)"
t_say "ok"
