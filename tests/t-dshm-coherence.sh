#!/bin/bash
# timeout: 120
# Eager release consistency across 3 simulated hosts, owner h1:
# a client on h3 that read the old page keeps reading the OLD value while a
# writer on h2 is inside its critical section, and reads the NEW value right
# after the release (its copy was invalidated and is fetched again).
# A client writing pages in sequence takes write faults on the first two
# only (the pages after them are made writable ahead, write-ahead-pages),
# and its release still writes back exactly the pages it changed.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 3
ds_cluster 3 "seg:64K:1"

ds_script h2 writer seg
ds_script h3 reader seg
ds_script h1 ownerside seg

t_step "initial value, written and released on h2"
ds_ask_ok writer "acquire 0" >/dev/null
ds_ask_ok writer "write 0 100" >/dev/null
ds_ask_ok writer "release 0" >/dev/null
t_assert_eq "$(ds_ask reader "read 0")" "value 100" "h3 reads the released value"

t_step "h2 enters a critical section and writes 200: others still see 100"
ds_ask_ok writer "acquire 0" >/dev/null
ds_ask_ok writer "write 0 200" >/dev/null
t_assert_eq "$(ds_ask writer "read 0")" "value 200" "the writer sees its own write"
t_assert_eq "$(ds_ask reader "read 0")" "value 100" "h3 reads the old value during the critical section"
t_assert_eq "$(ds_ask ownerside "read 0")" "value 100" "the owner h1 still has the old value"

t_step "release: the write reaches the owner and h3's copy is invalidated"
inval_before=$(ds_stat h3 seg invalidations_received)
rel=$(ds_ask_ok writer "release 0")
t_assert_match "$rel" "pages=1 bytes=[0-9]+" "release reports one page written back"
t_assert_eq "$(ds_ask reader "read 0")" "value 200" "h3 reads the new value after the release"
t_assert_eq "$(ds_ask ownerside "read 0")" "value 200" "the owner has the new value"
inval_after=$(ds_stat h3 seg invalidations_received)
t_assert_eq $((inval_after - inval_before)) 1 "pages invalidated on h3 by the release"

t_step "writes by a client ON the owner host invalidate remote copies at its release"
ds_ask_ok ownerside "acquire 0" >/dev/null
ds_ask_ok ownerside "write 0 300" >/dev/null
t_assert_eq "$(ds_ask reader "read 0")" "value 200" "h3 during the owner-side critical section"
t_assert_eq "$(ds_ask writer "read 0")" "value 200" "h2 during the owner-side critical section"
ds_ask_ok ownerside "release 0" >/dev/null
t_assert_eq "$(ds_ask reader "read 0")" "value 300" "h3 after the owner-side release"
t_assert_eq "$(ds_ask writer "read 0")" "value 300" "h2 after the owner-side release"

t_step "a 1 MiB-wide pattern written under the lock on h3 is read back exactly on h2"
ds_ask_ok reader "acquire 1" >/dev/null
ds_ask_ok reader "fill 4096 61440 7" >/dev/null
ds_ask_ok reader "release 1" >/dev/null
ds_ask_ok writer "acquire 1" >/dev/null
t_assert_eq "$(ds_ask writer "verify 4096 61440 7")" "ok verified" "pattern read on h2"
ds_ask_ok writer "release 1" >/dev/null
t_step "a sequential writer: write faults on its first pages only, exactly the changed pages written back"
ds_ask_ok writer "touch 0 65536" >/dev/null  # every page valid on h2
wp0=$(ds_stat h2 seg wp_faults) ahead0=$(ds_stat h2 seg write_ahead)
ds_ask_ok writer "acquire 2" >/dev/null
ds_ask_ok writer "fill 8192 32768 9" >/dev/null  # pages 2..9, in order
rel=$(ds_ask_ok writer "release 2")
wp=$(($(ds_stat h2 seg wp_faults) - wp0)) ahead=$(($(ds_stat h2 seg write_ahead) - ahead0))
t_say "   8 pages written: $wp write faults, $ahead pages made writable ahead"
[ "$wp" -le 3 ] || t_fail "8 sequential pages took $wp write faults (expected 2: the rest written ahead)"
[ "$ahead" -ge 6 ] || t_fail "only $ahead pages made writable ahead"
t_assert_match "$rel" "pages=8 " "the release writes back the 8 changed pages, not the pages made writable ahead"
t_assert_match "$(ds_attach h1 seg verify --offset 8192 --length 32768 --pattern 9)" "^verify OK" "pages 2..9 on the owner"
t_assert_match "$(ds_attach h1 seg verify --offset 40960 --length 24576 --pattern 7)" "^verify OK" "pages 10..15 unchanged on the owner"
t_assert_eq "$(ds_ask reader "verify 8192 32768 9")" "ok verified" "pages 2..9 on h3"

t_step "after the release the pages written ahead are protected again: a later write is caught"
ds_ask_ok writer "acquire 2" >/dev/null
ds_ask_ok writer "write 61440 4242" >/dev/null  # page 15, made writable ahead above
ds_ask_ok writer "release 2" >/dev/null
t_assert_eq "$(ds_attach h1 seg read --offset 61440)" 4242 "page 15's write on the owner"

ds_ctl h1 segments
t_say "ok"
