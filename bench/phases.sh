#!/usr/bin/env bash
# bench/phases.sh: where the time of a remote release, or of a remote read
# fault, goes.
#
#   sudo bench/phases.sh [release|faults] [--pin-hosts] [--poll-us N]
#                        [--pages P] [--rounds R] [--perf] [--out FILE]
#
# Two simulated hosts (TB_PREFIX=dshmq, TB_NET=198.18.2: beside the test
# suite and bench/run-dshmd.sh), segment owned by h1, dshm_bench on h2, both
# daemons started with DSHMD_PHASES: they stamp each step with
# CLOCK_MONOTONIC (one clock for every namespace of this machine) and with
# their thread's CPU time.  This prints the median and p90 of each step and,
# for a step stamped at both ends by one thread of one daemon, the median
# CPU time that thread used in it (the rest of the step it waited).
#
# release (default): `dshm_bench writeback`, P full pages per release, R
# rounds (default 1024 x 40, as run-dshmd.sh):
#   protect        h2: rel-start -> rel-protected   write-protect the dirty pages
#   diff+send      h2: rel-protected -> rel-sent    diff each page, hand the
#                                                   frames to the socket
#   first frame    rel-protected -> own-first-wb    until h1 reads the first WRITEBACK
#   owner lag      rel-sent -> own-p-release        h1 still reading (and applying)
#                                                   after h2 wrote the last byte
#   commit         h1: own-p-release -> own-applied commit the write-backs (applied
#                                                   as they arrived)
#   ack            own-applied -> rel-acked         P_RELEASE_ACK back to h2
#   total          rel-start -> rel-acked           dshmd's part of one release
#
# faults: `dshm_bench faults` over P pages (default 4096), each one remote
# read fault:
#   fetch          h2: flt-event -> flt-fetched     uffd event handled, FETCH sent
#   to owner       flt-fetched -> own-fetch         until h1 handles the FETCH
#   serve          h1: own-fetch -> own-page        PAGE sent
#   to host        own-page -> flt-page             until h2 handles the PAGE
#   install        h2: flt-page -> flt-done         UFFDIO_COPY, waiters woken
#   total          flt-event -> flt-done            dshmd's part of one fault
# (The client's own wake-ups, fault -> uffd event and copy -> running again,
# are the rest of the latency dshm_bench prints.)
#
# --perf: also samples the whole machine with `perf record` (4 kHz, clock
# CLOCK_MONOTONIC, the stamps' clock) during the run, and prints for each
# step the daemons' samples that fall inside it: per daemon, µs per unit
# and the symbols that take most of it.  (On a VM without a PMU, time with
# interrupts off is charged to where they are turned back on:
# `_raw_spin_unlock_irq*` is mostly wake-ups.)
#
# --pin-hosts: h1 on the first half of the CPUs, h2 on the second (as
# run-dshmd.sh).  Output to the terminal and to FILE (default
# bench/results/phases-MODE-YYYYMMDD-HHMMSS.txt).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
CMDLINE=$(printf '%q ' "$0" "$@")
MODE=release
PIN_HOSTS=0
PERF=0
POLL_US=0
PAGES=""
ROUNDS=40
OUT=""
usage() { sed -n '2,51p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        release|faults) MODE=$1; shift; continue ;;
        --pin-hosts) PIN_HOSTS=1; shift; continue ;;
        --perf) PERF=1; shift; continue ;;
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
[ -n "$PAGES" ] || PAGES=$([ "$MODE" = release ] && echo 1024 || echo 4096)

export TB_PREFIX=${TB_PREFIX:-dshmq} TB_NET=${TB_NET:-198.18.2}
# shellcheck source=lib.sh
source "$HERE/lib.sh"
DSHM_BENCH=$MESON_BUILD/bench/dshm_bench
for f in "$DSHM_BENCH" "$DSHMD" "$DSHMCTL" "$TB_REAPER"; do
    [ -x "$f" ] || { echo "$f is missing: build it (ninja -C $MESON_BUILD)" >&2; exit 1; }
done
bench_prepare phases-$MODE
exec > >(tee -i "$OUT") 2>&1

echo "# $MODE phases: $CMDLINE"
bench_machine_line
echo "# poll-us=$POLL_US pages=$PAGES rounds=$ROUNDS cpus: $(bench_cpus_line)"
echo "# load at start: $(cut -d' ' -f1-3 /proc/loadavg)"

tb_init 2
DSHMD_PHASES=1 ds_cluster 2 "seg:$((PAGES * 4096)):1" "poll-us = $POLL_US\nread-ahead-pages = 0"
bench_pin_dshmd h1 h2
PERF_DATA=$TB_STATE/perf.data
if [ "$PERF" = 1 ]; then
    command -v perf >/dev/null || { echo "--perf: no perf (apt-get install linux-perf)" >&2; exit 1; }
    # Global pid -> host, from each daemon's command line (its config path).
    for pid in $(pgrep -x dshmd); do
        grep -qa "$TB_STATE/h1/" "/proc/$pid/cmdline" && echo "$pid h1"
        grep -qa "$TB_STATE/h2/" "/proc/$pid/cmdline" && echo "$pid h2"
    done >"$TB_STATE/pids"
    perf record -q -a -k CLOCK_MONOTONIC -F 4000 -o "$PERF_DATA" 2>/dev/null &
    PERF_PID=$!
    sleep 0.5
fi
if [ "$MODE" = release ]; then
    tb_run h2 $(bench_pin h2) "$DSHM_BENCH" writeback --socket /run/dshm/dshmd.sock --segment seg \
        --pages "$PAGES" --rounds "$ROUNDS"
else
    tb_run h2 $(bench_pin h2) "$DSHM_BENCH" faults --socket /run/dshm/dshmd.sock --segment seg \
        --pages "$PAGES"
fi
if [ "$PERF" = 1 ]; then
    kill -INT "$PERF_PID"
    wait "$PERF_PID" || true
    perf script -i "$PERF_DATA" -F pid,time,ip,sym --ns 2>/dev/null >"$TB_STATE/perf.txt"
fi
for h in h1 h2; do tb_kill "$h" dshmd TERM || true; done
for h in h1 h2; do
    for i in $(seq 1 100); do tb_alive "$h" dshmd || break; sleep 0.05; done
done
python3 - "$MODE" "$TB_STATE/h1/phases.log" "$TB_STATE/h2/phases.log" "$PERF" "$TB_STATE" <<'PY'
import bisect, collections, math, sys
mode = sys.argv[1]
ev = []  # (time ns, stamp, (host, thread id), first number, thread CPU ns)
for host, path in zip(('h1', 'h2'), sys.argv[2:4]):
    for line in open(path):
        t, what, a, b, cpu, tid = line.split()
        ev.append((int(t), what, (host, tid), int(a), int(cpu)))
ev.sort()
if mode == 'release':
    # One release at a time: cut the merged stream at each rel-start.
    units, cur = [], None
    for t, what, host, a, cpu in ev:
        if what == 'rel-start':
            cur = {}
            units.append(cur)
        if cur is not None and what not in cur:
            cur[what] = (t, host, cpu)
    units = units[1:]  # the first release also fetched the pages
    steps = [
        ('protect', 'rel-start', 'rel-protected'),
        ('diff+send', 'rel-protected', 'rel-sent'),
        ('first frame', 'rel-protected', 'own-first-wb'),
        ('owner lag', 'rel-sent', 'own-p-release'),
        ('commit', 'own-p-release', 'own-applied'),
        ('ack', 'own-applied', 'rel-acked'),
        ('total', 'rel-start', 'rel-acked'),
    ]
else:
    # The fault stamps carry the page number: one unit per page.
    by_page = {}
    for t, what, host, a, cpu in ev:
        if what.startswith('flt-') or what in ('own-fetch', 'own-page'):
            by_page.setdefault(a, {}).setdefault(what, (t, host, cpu))
    units = list(by_page.values())
    steps = [
        ('fetch', 'flt-event', 'flt-fetched'),
        ('to owner', 'flt-fetched', 'own-fetch'),
        ('serve', 'own-fetch', 'own-page'),
        ('to host', 'own-page', 'flt-page'),
        ('install', 'flt-page', 'flt-done'),
        ('total', 'flt-event', 'flt-done'),
    ]
need = {s for _, a, b in steps for s in (a, b)}
units = [u for u in units if need <= u.keys()]
def pct(v, q):
    v = sorted(v)
    return v[max(0, math.ceil(q * len(v)) - 1)]  # nearest rank
unit = 'ms' if mode == 'release' else 'us'
scale = 1e6 if mode == 'release' else 1e3
print('%s: %d' % ('releases' if mode == 'release' else 'faults', len(units)))
print('%-12s %10s %10s %12s' % ('step', 'p50 ' + unit, 'p90 ' + unit, 'on-CPU p50'))
for name, a, b in steps:
    d = [(u[b][0] - u[a][0]) / scale for u in units]
    oncpu = ''
    # Both ends stamped by one thread (a thread's CPU clock is its own).
    if units and all(u[a][1] == u[b][1] for u in units):
        oncpu = '%10.3f' % pct([(u[b][2] - u[a][2]) / scale for u in units], 0.5)
    print('%-12s %10.3f %10.3f %12s' % (name, pct(d, 0.5), pct(d, 0.9), oncpu))
if mode == 'release':
    if all(u['own-applied'][1] == u['own-first-wb'][1] for u in units):
        d = [(u['own-applied'][2] - u['own-first-wb'][2]) / scale for u in units]
        print('owner on-CPU from its first frame to the commit, p50: %.3f ms' % pct(d, 0.5))
if sys.argv[4] == '1' and units:
    state = sys.argv[5]
    host_of = dict(line.split() for line in open(state + '/pids'))
    samples = []  # (time ns, host, symbol) of the daemons
    for line in open(state + '/perf.txt'):
        f = line.split(None, 3)  # pid, time:, ip, symbol
        if len(f) >= 3 and f[0] in host_of:
            samples.append((int(round(float(f[1].rstrip(':')) * 1e9)), host_of[f[0]],
                            f[3].strip() if len(f) > 3 else '?'))
    samples.sort()
    times = [t for t, _, _ in samples]
    period_us = 1e6 / 4000
    print()
    print('perf: daemon samples inside each step (%.0f us each), us per %s' %
          (period_us, 'release' if mode == 'release' else 'fault'))
    for name, a, b in steps:
        if name == 'total':
            continue
        per = collections.Counter()
        syms = collections.defaultdict(collections.Counter)
        for u in units:
            i = bisect.bisect_left(times, u[a][0])
            while i < len(samples) and samples[i][0] < u[b][0]:
                per[samples[i][1]] += 1
                syms[samples[i][1]][samples[i][2]] += 1
                i += 1
        line = ', '.join('%s %.1f' % (h, per[h] * period_us / len(units)) for h in sorted(per))
        print('  %-12s %s' % (name, line or 'no samples'))
        for h in sorted(per):
            top = syms[h].most_common(6)
            print('      %s: %s' % (h, '; '.join('%s %.1f' % (s[:40], c * period_us / len(units)) for s, c in top)))
PY
