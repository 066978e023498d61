#!/usr/bin/env bash
# bench/decompose.sh: where a blocking remote read fault's time goes beyond
# the sum of its two floors, by swapping dshm's parts in one at a time.
#
#   sudo bench/decompose.sh [--reps R] [--pages N] [--pin-hosts] [--out FILE]
#
# Three simulated hosts (TB_PREFIX=dshmc, TB_NET=198.18.3): the segment is
# owned by h3; h2 runs dshmd and dshm_bench; h1's dshmd is stopped, and h1
# stands in for a client host whose "dshmd" is uffd_floor's bare resolver.
# Each repetition measures, interleaved (median of N faults each):
#   floors       uffd_floor --mode blocking on h2; tcp_floor rtt h2 -> h3
#                (64 B / 4 KiB, blocking)
#   relay        uffd_floor on h1, its resolver fetching each page from a
#                tcp_floor server on h3: the floors composed
#   io-relay     the same, the resolver waiting as dshmd does (its I/O
#                thread, watch.h) for the uffd event and for the reply
#   dshmd-relay  the bare resolver on h1 as peer host 1 of the real dshmd on
#                h3: FETCH / PAGE (dshmd on the owner side only)
#   dshm         dshm_bench faults on h2: dshmd on both sides
# and prints the medians and each step's ratio to the one before, so a
# change to one side of dshmd shows where it belongs.  (relay -> dshmd-relay
# swaps tcp_floor for dshmd on the owner; io-relay -> dshm swaps that
# resolver for dshmd on the client host.)
#
# --pin-hosts: the owner h3 (its dshmd and the tcp_floor servers) on the
# first half of the CPUs, h1 and h2 on the second half.  Output to the
# terminal and to FILE (default bench/results/decompose-YYYYMMDD-HHMMSS.txt).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CMDLINE=$(printf '%q ' "$0" "$@")
REPS=5
PAGES=4096
OUT=""
PIN_HOSTS=0
usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --pin-hosts) PIN_HOSTS=1; shift; continue ;;
        --reps|--pages|--out) [ $# -ge 2 ] || usage ;;
        *) usage ;;
    esac
    case $1 in
        --reps) REPS=$2 ;;
        --pages) PAGES=$2 ;;
        --out) OUT=$2 ;;
    esac
    shift 2
done

export TB_PREFIX=${TB_PREFIX:-dshmc} TB_NET=${TB_NET:-198.18.3}
# shellcheck source=lib.sh
source "$HERE/lib.sh"
UFFD_FLOOR=$MESON_BUILD/bench/uffd_floor
TCP_FLOOR=$MESON_BUILD/bench/tcp_floor
DSHM_BENCH=$MESON_BUILD/bench/dshm_bench
for f in "$UFFD_FLOOR" "$TCP_FLOOR" "$DSHM_BENCH" "$DSHMD" "$TB_REAPER"; do
    [ -x "$f" ] || { echo "$f is missing: build it (ninja -C $MESON_BUILD)" >&2; exit 1; }
done
bench_prepare decompose
exec > >(tee -i "$OUT") 2>&1

# The owner h3 takes the CPUs lib.sh gives h1 elsewhere; h1 and h2 the others.
OWNER_CPUS=$(bench_cpus h1) CLIENT_CPUS=$(bench_cpus h2)
owner_cpus() { bench_pin h1; }
client_cpus() { bench_pin h2; }
echo "# fault decomposition: $CMDLINE"
bench_machine_line
echo "# reps=$REPS pages=$PAGES cpus: $([ "$PIN_HOSTS" = 1 ] && echo "pinned: h3 on $OWNER_CPUS, h1 and h2 on $CLIENT_CPUS" || echo "not pinned")"
echo "# load at start: $(cut -d' ' -f1-3 /proc/loadavg)"

tb_init 3
H3=$(tb_addr h3)
RES=$TB_STATE/results.txt
ds_cluster 3 "seg:$((PAGES * REPS * 4096)):3" "poll-us = 0\nread-ahead-pages = 0"
tb_kill h1 dshmd TERM
for i in $(seq 1 100); do tb_alive h1 dshmd || break; sleep 0.05; done
if [ "$PIN_HOSTS" = 1 ]; then
    tb_run h3 taskset -a -p -c "$OWNER_CPUS" "$(cat "$TB_STATE/h3/dshmd.pid")" >/dev/null
    bench_pin_dshmd h2
fi

for rep in $(seq 1 "$REPS"); do
    echo "== repetition $rep of $REPS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    out=$(tb_run h2 $(client_cpus) "$UFFD_FLOOR" --pages "$PAGES" --mode blocking | grep '^uffd_fault ')
    echo "$out"; sed "s/^/rep=$rep /" <<<"$out" >>"$RES"
    port=$(bench_tcp_server h3 $(owner_cpus)) || t_fail "no tcp_floor server"
    out=$(tb_run h2 $(client_cpus) "$TCP_FLOOR" client --connect "$H3:$port" --iterations 5000 \
        --request 64 --reply 4096 --timeout 120 | grep '^tcp_rtt ')
    echo "$out"; sed "s/^/rep=$rep /" <<<"$out" >>"$RES"
    bench_tcp_server_gone h3
    port=$(bench_tcp_server h3 $(owner_cpus)) || t_fail "no tcp_floor server"
    out=$(tb_run h1 $(client_cpus) "$UFFD_FLOOR" --pages "$PAGES" --mode none --relay "$H3:$port" \
        --relay-dshmd "$H3:$DSHM_PORT,seg,1" | grep '^uffd_fault ')
    echo "$out"; sed "s/^/rep=$rep /" <<<"$out" >>"$RES"
    bench_tcp_server_gone h3
    out=$(tb_run h2 $(client_cpus) "$DSHM_BENCH" faults --socket /run/dshm/dshmd.sock --segment seg \
        --pages "$PAGES" --first $(((rep - 1) * PAGES)) | grep '^remote_fault ')
    echo "$out"; sed "s/^/rep=$rep /" <<<"$out" >>"$RES"
done

echo
python3 - "$RES" <<'EOF'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    d = dict(t.split('=', 1) for t in line.split() if '=' in t)
    d['what'] = line.split()[1]
    rows.append(d)
def med(what, mode=None):
    v = [float(r['p50_us']) for r in rows if r['what'] == what and (mode is None or r.get('mode') == mode)]
    return (statistics.median(v), min(v), max(v)) if v else (float('nan'),) * 3
u, t = med('uffd_fault', 'blocking'), med('tcp_rtt')
steps = [('floors summed (uffd + tcp rtt)', (u[0] + t[0], u[1] + t[1], u[2] + t[2])),
         ('relay: the floors composed', med('uffd_fault', 'relay')),
         ("io-relay: resolver on dshmd's I/O thread", med('uffd_fault', 'io-relay')),
         ('dshmd-relay: dshmd on the owner', med('uffd_fault', 'dshmd-relay')),
         ('dshm: dshmd on both sides', med('remote_fault'))]
print('== medians of the p50s over the repetitions [min..max]')
print('  %-40s %8s  %-16s %9s' % ('', 'p50 us', '', 'x floors'))
for name, (m, lo, hi) in steps:
    print('  %-40s %8.2f  [%6.1f..%6.1f] %9.2f' % (name, m, lo, hi, m / steps[0][1][0]))
r, lr, dr, d = (x[1][0] for x in steps[1:])
print('  composing the floors          relay / floors       %.2f' % (r / steps[0][1][0]))
print("  dshmd's I/O thread, client    io-relay / relay     %.2f" % (lr / r))
print('  dshmd on the owner            dshmd-relay / relay  %.2f' % (dr / r))
print('  dshmd on the client host      dshm / dshmd-relay   %.2f' % (d / dr))
EOF
echo
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
tb_teardown
