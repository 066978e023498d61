#!/bin/bash
# make demo: dshm on three simulated hosts.
#
# h1 owns the segment "counters"; one VM on h2 and one on h3 each add 1 to a
# shared counter 500 times, each time under lock 0 of the segment.  dshmd on
# every host keeps the copies coherent (eager release consistency): at each
# release the VM's changed bytes go to h1, which invalidates the other copy
# before the lock can be granted again.  The final value must be exactly 1000.
source "$(dirname "$0")/../tests/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/vm.sh"
need_built
N=${DSHM_DEMO_ITERATIONS:-500}

say "dshm demo — guests on different hosts sharing memory through dshmd"
say "accelerator: $(dshm_accel) (override with DSHM_ACCEL=kvm|tcg)"
say ""
step "1. three simulated hosts (network + mount + PID namespaces on a lab bridge)"
tb_init 3
for h in h1 h2 h3; do say "   $h  $(tb_addr "$h")"; done

step "2. dshmd on every host; segment 'counters' (64 KiB) owned by h1"
dshm_cluster 3 "counters:64K:1"
say "   every daemon is connected to the two others:"
dshmctl_on h1 peers | sed 's/^/   /'

step "3. a VM on h2 and a VM on h3, each counting to $N under lock 0"
say "   guest command: dshm-tool count counters --iterations $N --lock 0"
for hv in h2:vm-a h3:vm-b; do
    vm_start "${hv%:*}" "${hv#*:}" counters "dshm-tool count counters --iterations $N --lock 0"
done
for hv in h2:vm-a h3:vm-b; do
    vm_wait "${hv%:*}" "${hv#*:}" '^DSHM-CMD-EXIT=' 600
done
for hv in h2:vm-a h3:vm-b; do
    line=$(grep -m1 '^count done' "$(vm_console "${hv%:*}" "${hv#*:}")" | tr -d '\r')
    [ -n "$line" ] || fail "${hv#*:} did not finish its count"
    say "   ${hv#*:} on ${hv%:*}: $(sed -E 's/ (acquire|release)_[a-z0-9_]+=[^ ]*//g' <<<"$line")"
done

step "4. the result, read on the owner h1 by a host-side client"
final=$(dshm_attach h1 counters read --offset 0)
say "   counter = $final (expected $((2 * N)))"
[ "$final" = $((2 * N)) ] || fail "the counter is $final, expected $((2 * N))"

step "5. what each dshmd saw"
for h in h1 h2 h3; do
    say "   -- $h"
    dshmctl_on "$h" segments | sed 's/^/   /'
done
say ""
say "   h1 (the owner) applied the write-backs and sent the invalidations;"
say "   h2 and h3 fetched the page on demand and wrote back a few bytes per release."

step "6. tearing the simulated hosts down"
tb_teardown
say "demo finished: $((2 * N)) increments from two hosts, none lost."
