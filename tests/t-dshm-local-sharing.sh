#!/bin/bash
# timeout: 120
# Two clients on the same host attached to one segment share ONE local copy:
# dshmd holds one memfd for the segment, both clients map that same memfd,
# and pages that both fault on at the same time are fetched from the owner
# once each.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
need_built
tb_init 2
dshm_cluster 2 "seg:1M:1"
dshm_script h2 clientA seg
dshm_script h2 clientB seg

step "both clients map the same memfd inode; dshmd holds one memfd for the segment"
inode() { tb_run h2 cat "/proc/$(pid_of h2 "dshm-attach --name $1 ")/maps" | awk '/memfd:dshm:seg/ {print $5; exit}'; }
iA=$(inode clientA) iB=$(inode clientB)
[ -n "$iA" ] || fail "clientA does not map the segment memfd"
assert_eq "$iB" "$iA" "memfd inode mapped by clientB vs clientA"
dpid=$(pid_of h2 "hostd/dshmd ")
nfd=$(tb_run h2 ls -l "/proc/$dpid/fd" | grep -c 'memfd:dshm:seg' || true)
assert_eq "$nfd" 1 "memfds of the segment held by dshmd on h2"

step "both clients read all 256 pages at the same time"
ask_send clientA "touch 0 1048576"
ask_send clientB "touch 0 1048576"
a=$(ask_recv clientA 60) || fail "clientA did not finish"
b=$(ask_recv clientB 60) || fail "clientB did not finish"
assert_match "$a" "^ok" "clientA touch"
assert_match "$b" "^ok" "clientB touch"
assert_eq "$(dshm_stat h2 seg fetches_sent)" 256 "pages fetched by h2 (one per page)"
assert_eq "$(dshm_stat h1 seg fetches_served)" 256 "pages served by the owner"
assert_eq "$(dshm_stat h2 seg valid_pages)" 256 "valid pages in h2's one copy"
say "   h2: $(dshm_stat h2 seg missing_faults) missing faults from 2 clients, $(dshm_stat h2 seg fetches_sent) fetches"

step "a write by one is seen by the other at once (same memory), and by the owner after release"
ask_ok clientA "acquire 0" >/dev/null
ask_ok clientA "write 8 77" >/dev/null
assert_eq "$(ask clientB "read 8")" "value 77" "clientB reads clientA's write on the same host"
ask_ok clientA "release 0" >/dev/null
assert_eq "$(dshm_attach h1 seg read --offset 8)" 77 "the owner reads it after the release"
dshmctl_on h2 segments
say "ok"
