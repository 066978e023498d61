#!/bin/bash
# timeout: 120
# Two clients on the same host attached to one segment share ONE local copy:
# dshmd holds one memfd for the segment, both clients map that same memfd,
# and pages that both fault on at the same time are fetched from the owner
# once each.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
t_need_built
tb_init 2
ds_cluster 2 "seg:1M:1"
ds_script h2 clientA seg
ds_script h2 clientB seg

t_step "both clients map the same memfd inode; dshmd holds one memfd for the segment"
inode() { tb_run h2 cat "/proc/$(tb_pid_of h2 "dshm-attach --name $1 ")/maps" | awk '/memfd:dshm:seg/ {print $5; exit}'; }
iA=$(inode clientA) iB=$(inode clientB)
[ -n "$iA" ] || t_fail "clientA does not map the segment memfd"
t_assert_eq "$iB" "$iA" "memfd inode mapped by clientB vs clientA"
dpid=$(tb_pid_of h2 "hostd/dshmd ")
nfd=$(tb_run h2 ls -l "/proc/$dpid/fd" | grep -c 'memfd:dshm:seg' || true)
t_assert_eq "$nfd" 1 "memfds of the segment held by dshmd on h2"

t_step "both clients read all 256 pages at the same time"
ds_ask_send clientA "touch 0 1048576"
ds_ask_send clientB "touch 0 1048576"
a=$(ds_ask_recv clientA 60) || t_fail "clientA did not finish"
b=$(ds_ask_recv clientB 60) || t_fail "clientB did not finish"
t_assert_match "$a" "^ok" "clientA touch"
t_assert_match "$b" "^ok" "clientB touch"
t_assert_eq "$(ds_stat h2 seg fetches_sent)" 256 "pages fetched by h2 (one per page)"
t_assert_eq "$(ds_stat h1 seg fetches_served)" 256 "pages served by the owner"
t_assert_eq "$(ds_stat h2 seg valid_pages)" 256 "valid pages in h2's one copy"
t_say "   h2: $(ds_stat h2 seg missing_faults) missing faults from 2 clients, $(ds_stat h2 seg fetches_sent) fetches"

t_step "a write by one is seen by the other at once (same memory), and by the owner after release"
ds_ask_ok clientA "acquire 0" >/dev/null
ds_ask_ok clientA "write 8 77" >/dev/null
t_assert_eq "$(ds_ask clientB "read 8")" "value 77" "clientB reads clientA's write on the same host"
ds_ask_ok clientA "release 0" >/dev/null
t_assert_eq "$(ds_attach h1 seg read --offset 8)" 77 "the owner reads it after the release"
ds_ctl h2 segments
t_say "ok"
