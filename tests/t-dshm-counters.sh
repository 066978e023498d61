#!/bin/bash
# timeout: 300
# Clients on 3 hosts increment shared counters under locks:
#  1. one counter, one lock, 2,000 increments per host: the final value is exact;
#  2. false sharing: 8 counters in ONE page, each incremented 2,000 times by a
#     client on its own host under its own lock id, all concurrently: every
#     counter is exact (multiple-writer diffs), and the bytes written back per
#     release are far below a page.
# h1 and h2 run dshmd's default I/O thread, h3 its main loop alone
# (io-thread = false): both ways of waiting serve the same protocol.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
DSHM_CONF_h3="io-thread = false" ds_cluster 3 "ctr:64K:1"
for h in h1 h2 h3; do
    want=on; [ $h = h3 ] && want=off
    grep -q "I/O thread $want" "$(tb_log $h dshmd)" || { cat "$(tb_log $h dshmd)"; t_fail "dshmd on $h: I/O thread not $want"; }
done
N=2000

t_step "one counter at offset 0, lock 0, $N increments from each of h1, h2, h3 at once"
for h in h1 h2 h3; do
    tb_spawn "$h" count "$DSHM_ATTACH" --name "count-$h" ctr count --offset 0 --iterations $N --lock 0
done
for h in h1 h2 h3; do
    t_wait_for_file_match "$(tb_log "$h" count)" '^count done' 200 || { cat "$(tb_log "$h" count)"; t_fail "count on $h did not finish"; }
    t_say "   $h: $(cat "$(tb_log "$h" count)")"
done
t_assert_eq "$(ds_attach h2 ctr read --offset 0)" $((3 * N)) "final counter read on h2"
t_assert_eq "$(ds_attach h1 ctr read --offset 0)" $((3 * N)) "final counter read on the owner"

t_step "8 counters in page 1 (offsets 4096 + 8*i), counter i under lock 10+i, hosts round-robin"
for i in 0 1 2 3 4 5 6 7; do
    h=h$((i % 3 + 1))
    tb_spawn "$h" "fs$i" "$DSHM_ATTACH" --name "fs$i" ctr count --offset $((4096 + 8 * i)) --iterations $N --lock $((10 + i)) --exclusive 1
done
for i in 0 1 2 3 4 5 6 7; do
    h=h$((i % 3 + 1))
    t_wait_for_file_match "$(tb_log "$h" "fs$i")" '^count done' 250 || { cat "$(tb_log "$h" "fs$i")"; t_fail "fs$i did not finish"; }
done
for i in 0 1 2 3 4 5 6 7; do t_say "   counter $i on h$((i % 3 + 1)): $(cat "$(tb_log "h$((i % 3 + 1))" "fs$i")")"; done
for i in 0 1 2 3 4 5 6 7; do
    for reader in h1 h3; do
        t_assert_eq "$(ds_attach $reader ctr read --offset $((4096 + 8 * i)))" $N "counter $i read on $reader"
    done
    h=h$((i % 3 + 1))
    line=$(cat "$(tb_log "$h" "fs$i")")
    per=$(sed -n 's/.*bytes_per_release=\([0-9.]*\).*/\1/p' <<<"$line")
    # A whole page would be 4096 bytes; a counter's diff is a few bytes.
    awk -v p="$per" 'BEGIN { exit !(p > 0 && p <= 64) }' || t_fail "counter $i: $per bytes per release, expected a small diff (<= 64)"
done
updates=0
for h in h1 h2 h3; do updates=$((updates + $(ds_stat $h ctr updates))); done
t_say "   dirty pages merged with UPDATE during the run: $updates"
ds_ctl h1 segments
t_say "ok"
