#!/bin/bash
# timeout: 300
# Ownership of a large segment moves (256 MiB, every page holding data that
# the new owner lacks), and a release writes back the whole segment at once:
#   - vmB on h2 fills all 256 MiB under one lock (a 256 MiB write-back,
#     four times the bound of a connection's output queue);
#   - vmB migrates h2 -> h3: ownership moves h1 -> h3, the snapshot streams
#     every page to h3 while h1 keeps serving;
#   - the destination's only client leaves while the pages stream in (as
#     a VM destroyed right after its migration): the new owner keeps them;
#   - every host agrees on the owner, the old owner logged one outcome (the
#     hand-over), and every byte reads back on every host.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
ds_cluster 3 "big:256M:1" '[policy]\nreport-ms = 200'
SIZE=$((256 << 20))


ds_script h1 vmA big
ds_script h2 vmB big

t_step "vmB on h2 writes all 256 MiB under lock 0 and releases"
ds_ask_ok vmB "acquire 0" >/dev/null
t0=$(date +%s%N)
ds_ask_ok vmB "fill 0 $SIZE 11" 240 >/dev/null
t1=$(date +%s%N)
rel=$(ds_ask_ok vmB "release 0" 240)
t2=$(date +%s%N)
t_say "   fill $(((t1 - t0) / 1000000)) ms, release $(((t2 - t1) / 1000000)) ms: $rel"
t_assert_match "$rel" "pages=65536" "pages written back by the release"
t_assert_eq "$(ds_stat h1 big writebacks_applied)" 65536 "write-backs applied on h1"
t_assert_match "$(ds_ask vmA "verify 0 $SIZE 11" 240)" "^ok" "h1 reads all 256 MiB vmB released"
ds_wait_view h1 vmB "strong most-active"  # a report period: the owner sees the dominant user

t_step "vmB migrates h2 -> h3: ownership of the 256 MiB segment moves h1 -> h3"
t0=$(date +%s%N)
ds_migrate vmB h3 vmB2 big vmB
ds_ask_ok vmB2 "quit" >/dev/null  # gone while the move streams its pages to h3
for h in h1 h2 h3; do
    for i in $(seq 1 300); do [ "$(ds_stat $h big owner)" = 3 ] && break; sleep 0.1; done
    t_assert_eq "$(ds_stat $h big owner)" 3 "owner as seen on $h"
done
t1=$(date +%s%N)
t_say "   migration + move $(((t1 - t0) / 1000000)) ms"
log1=$(cat "$(tb_log h1 dshmd)")
t_assert_match "$log1" "ownership handed to host 3 \(65536 page" "h1 handed over every page"
if grep -q "ownership stays here\|stays: the move" <<<"$log1"; then
    t_fail "h1 logged a failed move as well: $(grep 'stays' <<<"$log1")"
fi
if grep -qi "not reading\|output queue" "$(tb_log h1 dshmd)" "$(tb_log h2 dshmd)" "$(tb_log h3 dshmd)"; then
    t_fail "a connection overflowed its output queue"
fi

t_assert_match "$(cat "$(tb_log h3 dshmd)")" "this host is the owner now \(was host 1; 65536 page" \
    "h3 received every page"
t_assert_eq "$(ds_stat h3 big valid_pages)" 65536 "pages held by the new owner h3"
t_assert_eq "$(ds_stat h2 big local_copy)" False "h2 (no VM left) dropped its copy"

t_step "every byte reads back on every host; the new owner serves the next release"
ds_script h3 vmB3 big vmB
t_assert_match "$(ds_ask vmB3 "verify 0 $SIZE 11" 240)" "^ok" "h3 (new owner) reads all 256 MiB"
ds_ask_ok vmB3 "acquire 0" >/dev/null
ds_ask_ok vmB3 "fill 4096 8192 12" >/dev/null
ds_ask_ok vmB3 "release 0" >/dev/null
ds_ask_ok vmA "acquire 0" >/dev/null
t_assert_match "$(ds_ask vmA "verify 4096 8192 12")" "^ok" "h1 reads h3's new release"
t_assert_match "$(ds_ask vmA "verify 12288 $((SIZE - 12288)) 11" 240)" "^ok" "h1 still reads the rest"
ds_ask_ok vmA "release 0" >/dev/null
ds_script h2 reader big
t_assert_match "$(ds_ask reader "verify 0 4096 11" 60)" "^ok" "h2 reads page 0"
t_assert_match "$(ds_ask reader "verify 4096 8192 12" 60)" "^ok" "h2 reads h3's new release"
served=$(ds_stat h3 big fetches_served)
[ "$served" -gt 0 ] || t_fail "h3 served no fetch"
ds_ctl h3 segments
t_say "ok"
