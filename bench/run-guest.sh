#!/bin/bash
# In-guest costs of dshm (issue 4), measured by a TCG guest on simulated
# hosts, beside the same operations done by a host-side client
# (libdshm-client) in the same run:
#   - lock round trip (acquire + release, no dirty page), uncontended;
#   - remote read fault: a guest on h2 reads 1 MiB (256 pages) of a segment
#     owned by h1 whose pages h2 does not have, then reads it again (all
#     pages local now); (first - second) / 256 is the cost of a remote fault
#     as the guest sees it.
# Usage: bench/run-guest.sh  (root; writes bench/results/guest-*.txt)
set -euo pipefail
export TB_PREFIX=${TB_PREFIX:-dshmg} TB_NET=${TB_NET:-198.18.2}
source "$(dirname "$0")/../tests/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/vm.sh"
t_need_built
result_file=$TOP/bench/results/guest-$(date +%Y%m%d-%H%M%S).txt
exec > >(tee "$result_file") 2>&1
echo "# $0 ($(date -u), $(uname -r), $(nproc) cpus, accel $(t_accel))"
tb_init 2
ds_cluster 2 "seg:4M:1"
N=500

echo "== lock round trip, $N iterations, lock owned by h1, requester on h2"
ds_attach h2 seg count --offset 0 --iterations $N --lock 1 >/dev/null  # warm-up
t0=$(date +%s%N)
ds_attach h2 seg count --offset 0 --iterations $N --lock 1 >/dev/null
t1=$(date +%s%N)
echo "host client (dshm-attach) on h2:  mean $(( (t1 - t0) / N / 1000 )) us per acquire+release (incl. a write-back of 8 bytes)"
vm_start h2 g1 seg "dshm-tool count seg --iterations $N --lock 2"
vm_wait h2 g1 '^DSHM-CMD-EXIT=' 300
line=$(grep -m1 '^count done' "$(vm_console h2 g1)" | tr -d '\r')
echo "guest (dshm-tool count) on h2:    $(sed -E 's/.*(rtt_mean_us=[^ ]*) (rtt_p50_us=[^ ]*) (rtt_p99_us=[^ ]*).*/\1 \2 \3/' <<<"$line")"

echo "== remote read faults: 256 pages of h1's segment read from h2"
ds_attach h1 seg fill --offset 1M --length 1M --pattern 3 --lock 0 >/dev/null
hostf=$(tb_run h2 "$MESON_BUILD/bench/dshm_bench" faults --socket /run/dshm/dshmd.sock --segment seg --first 256 --pages 256 2>/dev/null | grep remote_fault || true)
echo "host client (dshm_bench) on h2:   ${hostf:-n/a (pages 0-255)}"
vm_start h2 g2 seg 'dshm-tool checksum -d seg --offset 2M --length 1M; dshm-tool checksum -d seg --offset 2M --length 1M'
vm_wait h2 g2 '^DSHM-CMD-EXIT=' 300
mapfile -t t < <(sed -n 's/^checksum .*elapsed_us=\([0-9]*\).*/\1/p' "$(vm_console h2 g2)")
[ ${#t[@]} = 2 ] || t_fail "the guest did not report two checksum timings"
echo "guest (TCG) on h2: first read of 1 MiB ${t[0]} us (256 remote faults), second ${t[1]} us (local)"
echo "guest remote fault: $(( (t[0] - t[1]) / 256 )) us per page"
echo "# results in $result_file"
