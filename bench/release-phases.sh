#!/usr/bin/env bash
# bench/release-phases.sh: where the time of a remote release goes.
#
#   sudo bench/release-phases.sh [--pin-hosts] [--poll-us N] [--pages P]
#                                [--rounds R] [--out FILE]
#
# Two simulated hosts (TB_PREFIX=dshmq, TB_NET=198.18.2: beside the test
# suite and bench/run-dshmd.sh), segment owned by h1, `dshm_bench writeback`
# on h2 (P full pages per release, R rounds; default 1024 x 40, as
# run-dshmd.sh), both daemons started with DSHMD_PHASES.  The daemons stamp
# each release's phases with CLOCK_MONOTONIC (one clock for every namespace
# of this machine), and this prints the median and p90 of each step, and
# for a step stamped at both ends by one daemon the median CPU time that
# daemon's thread used in it (the rest of the step it waited):
#
#   protect        h2: rel-start -> rel-protected   write-protect the dirty pages
#   diff+send      h2: rel-protected -> rel-sent    diff each page, hand the
#                                                   frames to the socket
#   first frame    rel-protected -> own-first-wb    until h1 reads the first WRITEBACK
#   owner lag      rel-sent -> own-p-release        h1 still reading after h2 wrote
#                                                   the last byte (>0: h1 is behind)
#   commit         h1: own-p-release -> own-applied commit the write-backs (applied
#                                                   as they arrived)
#   ack            own-applied -> rel-acked         P_RELEASE_ACK back to h2
#   total          rel-start -> rel-acked           dshmd's part of one release
#
# --pin-hosts: h1 on the first half of the CPUs, h2 on the second (as
# run-dshmd.sh).  Output to the terminal and to FILE (default
# bench/results/phases-YYYYMMDD-HHMM.txt).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
CMDLINE=$(printf '%q ' "$0" "$@")
PIN_HOSTS=0
POLL_US=0
PAGES=1024
ROUNDS=40
OUT=""
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --pin-hosts) PIN_HOSTS=1; shift; continue ;;
        --poll-us|--pages|--rounds|--out) [ $# -ge 2 ] || usage ;;
        *) usage ;;
    esac
    case $1 in
        --poll-us) POLL_US=$2 ;;
        --pages) PAGES=$2 ;;
        --rounds) ROUNDS=$2 ;;
        --out) OUT=$2 ;;
    esac
    shift 2
done

export TB_PREFIX=${TB_PREFIX:-dshmq} TB_NET=${TB_NET:-198.18.2}
# shellcheck source=lib.sh
source "$HERE/lib.sh"
DSHM_BENCH=$MESON_BUILD/bench/dshm_bench
for f in "$DSHM_BENCH" "$DSHMD" "$DSHMCTL" "$TB_REAPER"; do
    [ -x "$f" ] || { echo "$f is missing: build it (ninja -C $MESON_BUILD)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
bench_check_pin

mkdir -p "$TOP/bench/results"
[ -n "$OUT" ] || OUT=$TOP/bench/results/phases-$(date +%Y%m%d-%H%M).txt
exec > >(tee -i "$OUT") 2>&1

echo "# release phases: $CMDLINE"
echo "# date: $(date -Is)  kernel: $(uname -r)  nproc: $(nproc)  commit: $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo ?)"
echo "# poll-us=$POLL_US pages=$PAGES rounds=$ROUNDS cpus: $(bench_cpus_line)"
echo "# load at start: $(cut -d' ' -f1-3 /proc/loadavg)"

tb_init 2
DSHMD_PHASES=1 dshm_cluster 2 "wb:$((PAGES * 4096)):1" "poll-us = $POLL_US"
bench_pin_dshmd h1 h2
tb_run h2 $(bench_pin h2) "$DSHM_BENCH" writeback --socket /run/dshm/dshmd.sock --segment wb \
    --pages "$PAGES" --rounds "$ROUNDS"
for h in h1 h2; do tb_kill "$h" dshmd TERM || true; done
for h in h1 h2; do
    for i in $(seq 1 100); do tb_alive "$h" dshmd || break; sleep 0.05; done
done
python3 - "$TB_STATE/h1/phases.log" "$TB_STATE/h2/phases.log" <<'PY'
import math, sys
ev = []
for host, path in zip(('h1', 'h2'), sys.argv[1:]):
    for line in open(path):
        t, what, a, b, cpu = line.split()
        ev.append((int(t), what, host, int(cpu)))
ev.sort()
# One release at a time: cut the merged stream at each rel-start.
rels, cur = [], None
for t, what, host, cpu in ev:
    if what == 'rel-start':
        cur = {}
        rels.append(cur)
    if cur is not None and what not in cur:
        cur[what] = (t, host, cpu)
need = ('rel-start', 'rel-protected', 'rel-sent', 'own-first-wb', 'own-p-release',
        'own-applied', 'rel-acked')
rels = [r for r in rels if all(k in r for k in need)][1:]  # the first also fetched
steps = [
    ('protect', 'rel-start', 'rel-protected'),
    ('diff+send', 'rel-protected', 'rel-sent'),
    ('first frame', 'rel-protected', 'own-first-wb'),
    ('owner lag', 'rel-sent', 'own-p-release'),
    ('commit', 'own-p-release', 'own-applied'),
    ('ack', 'own-applied', 'rel-acked'),
    ('total', 'rel-start', 'rel-acked'),
]
def pct(v, q):
    v = sorted(v)
    return v[max(0, math.ceil(q * len(v)) - 1)]  # nearest rank
print('releases: %d' % len(rels))
print('%-12s %10s %10s %12s' % ('step', 'p50 ms', 'p90 ms', 'on-CPU p50'))
for name, a, b in steps:
    d = [(r[b][0] - r[a][0]) / 1e6 for r in rels]
    oncpu = ''
    if rels and rels[0][a][1] == rels[0][b][1]:  # both ends stamped by one daemon
        oncpu = '%10.3f' % pct([(r[b][2] - r[a][2]) / 1e6 for r in rels], 0.5)
    print('%-12s %10.3f %10.3f %12s' % (name, pct(d, 0.5), pct(d, 0.9), oncpu))
# The owner's CPU over the whole release (its stamps: first frame to commit).
d = [(r['own-applied'][2] - r['own-first-wb'][2]) / 1e6 for r in rels]
print('owner on-CPU from its first frame to the commit, p50: %.3f ms' % pct(d, 0.5))
PY
