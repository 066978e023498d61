#!/bin/bash
# timeout: 120
# Single-writer marks (docs/protocol.md section 6.1), 3 simulated hosts,
# owner h1: pages that h2 alone rewrites as a whole are marked exclusive to
# h2 after its first release, and from then on sent whole without the
# compare with their twins; the data stays exact.  Any other access gives
# the mark up first: a read from h3 (its FETCH waits for h2's EXCL_REVOKED)
# and a write by a client of the owner host (its write fault waits the
# same way); then concurrent writers of one page under different locks
# (false sharing) merge as ever.  A lost holder loses its marks.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:64K:1"
DSHM_BENCH=$MESON_BUILD/bench/dshm_bench

# Byte i of dshm_bench writeback's round r is (7i + r + 1) & 0xff; the u64
# at OFFSET (a multiple of 8) after its last round R.
bench_word() {
    local off=$1 r=$2 v=0 k
    for k in 7 6 5 4 3 2 1 0; do
        v=$(((v << 8) | ((7 * (off + k) + r + 1) & 255)))
    done
    printf '%u' "$v"
}

# A client that stays attached on h2 keeps h2's copy (and so its marks)
# between the benchmark runs; it writes later.
ds_script h2 writer seg

t_step "h2 rewrites pages 0..3, 6 releases: marked after the first whole one, then sent unchecked"
# (Round 0 leaves some bytes as the zeros it fetched: diffs.  Round 1
# rewrites every byte: FULL, compared; the owner grants the marks.  Rounds
# 2..5 go unchecked.)
out=$(tb_run h2 "$DSHM_BENCH" writeback --socket /run/dshm/dshmd.sock --segment seg --pages 4 --rounds 5)
t_say "   $out"
t_assert_match "$out" "pages_written=20 bytes_written=81920" "5 timed releases of 4 whole pages"
t_assert_eq "$(ds_stat h1 seg excl_granted)" 4 "marks granted by the owner"
t_assert_eq "$(ds_stat h1 seg excl_marked)" 4 "pages marked on the owner"
t_assert_eq "$(ds_stat h2 seg excl_marked)" 4 "pages marked on h2"
t_assert_eq "$(ds_stat h2 seg whole_unchecked)" 16 "pages h2 sent whole without the compare"
for off in 0 4088 8192 16376; do
    t_assert_eq "$(ds_attach h1 seg read --offset $off)" "$(bench_word $off 5)" "owner's word at $off"
done

t_step "a read from h3 revokes h2's mark on that page first, then sees the last release"
ds_script h3 reader seg
t_assert_eq "$(ds_ask reader "read 4096")" "value $(bench_word 4096 5)" "h3 reads page 1 as h2 released it"
t_assert_eq "$(ds_stat h1 seg excl_revoked)" 1 "marks revoked"
t_assert_eq "$(ds_stat h1 seg excl_marked)" 3 "pages still marked on the owner"
ds_wait_stat h2 seg excl_marked 3

t_step "after the revoke, h2 and h3 write page 1 under different locks: both writes stay"
ds_ask_ok writer "acquire 0" >/dev/null
ds_ask_ok reader "acquire 1" >/dev/null
ds_ask_ok writer "write 4096 11" >/dev/null
ds_ask_ok reader "write 4104 22" >/dev/null
ds_ask_ok writer "release 0" >/dev/null
ds_ask_ok reader "release 1" >/dev/null
t_assert_eq "$(ds_attach h1 seg read --offset 4096)" 11 "h2's word on the owner"
t_assert_eq "$(ds_attach h1 seg read --offset 4104)" 22 "h3's word on the owner"
t_assert_eq "$(ds_attach h1 seg read --offset 4112)" "$(bench_word 4112 5)" "the rest of page 1"

t_step "a write by a client of the owner host revokes the mark of its page first"
ds_script h1 ownerside seg
ds_ask_ok ownerside "acquire 2" >/dev/null
ds_ask_ok ownerside "write 8192 777" >/dev/null
ds_ask_ok ownerside "release 2" >/dev/null
t_assert_eq "$(ds_stat h1 seg excl_revoked)" 2 "marks revoked"
t_assert_eq "$(ds_ask writer "read 8192")" "value 777" "h2 reads the owner-side write"
t_assert_eq "$(ds_ask writer "read 8200")" "value $(bench_word 8200 5)" "the rest of page 2 on h2"

t_step "h2 alone rewrites pages 0..3 again: 0 and 3 go unchecked, 1 and 2 are marked again"
# Round 0: pages 0 and 3 unchecked, pages 1 and 2 compared (h3's copy of
# page 1 is invalidated); the owner marks 1 and 2 again: round 1 sends all
# four unchecked.
unchecked=$(ds_stat h2 seg whole_unchecked)
out=$(tb_run h2 "$DSHM_BENCH" writeback --socket /run/dshm/dshmd.sock --segment seg --pages 4 --rounds 1)
t_assert_match "$out" "pages_written=4 " "one timed release of 4 whole pages"
t_assert_eq $(($(ds_stat h2 seg whole_unchecked) - unchecked)) 6 "pages sent unchecked in the two rounds"
t_assert_eq "$(ds_stat h1 seg excl_granted)" 6 "marks granted in all"
t_assert_eq "$(ds_attach h3 seg read --offset 12288)" "$(bench_word 12288 1)" "h3 reads page 3 of the last round"
t_assert_eq "$(ds_stat h1 seg excl_revoked)" 3 "marks revoked in all"

t_step "h2 lost: the owner drops its marks"
t_assert_eq "$(ds_stat h1 seg excl_marked)" 3 "pages marked before"
tb_kill h2 dshmd TERM
ds_wait_peer h1 h2 no
t_assert_eq "$(ds_stat h1 seg excl_marked)" 0 "no page marked once h2 is lost"
