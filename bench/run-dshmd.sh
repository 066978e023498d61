#!/usr/bin/env bash
# bench/run-dshmd.sh: dshmd end-to-end benchmark next to its floors, in one run.
#
#   sudo bench/run-dshmd.sh [--poll-us N] [--reps R] [--pages N] [--passes P]
#                           [--lock-iters N] [--lock-iters-256 N]
#                           [--wb-pages P] [--wb-rounds R]
#                           [--tcp-iters N] [--tcp-bytes B] [--out FILE]
#                           [--pin-hosts]
#
# Creates 2 simulated hosts (a SEPARATE testbed instance: TB_PREFIX=dshmb,
# TB_NET=198.18.1, so it runs beside the test suite's dshm-* testbed) and,
# R times (interleaved, so drift and noise hit every line alike), measures:
#   floors    uffd_floor on h1 (blocking + busy-poll resolver);
#             tcp_floor h2 -> h1: 64 B request / 4 KiB reply RTT and stream
#             throughput (blocking + busy-poll), and a write-back's bytes
#             moved shmem to shmem, one round trip each (tcp transfer);
#             and, as diagnostics, the two composed: uffd_floor on h2
#             whose resolver fetches each page from tcp_floor on h1
#             (--relay: a remote fault's four wake-ups without dshmd),
#             blocking and waiting as dshmd does, on its I/O thread (io-relay);
#             compare_floor on h2: what comparing a write-back's pages with
#             their twins costs in memory reads, beside a plain copy;
#   dshm      dshmd with poll-us = 0 (blocking) and poll-us = N (bounded
#             busy-poll, default 200 µs), segments owned by h1, dshm_bench
#             on h2: remote read faults (N pages x P passes), lock round
#             trips with 0, 1 and 256 dirty pages, full-page write-back
#             throughput; dshmd CPU time (both hosts) over the fault runs.
# then prints a summary (medians over the R repetitions) with the issue's
# targets and a verdict each.  Everything printed goes to
# bench/results/dshmd-YYYYMMDD-HHMMSS.txt as well (or --out FILE).
# --pin-hosts gives each simulated host its own half of the CPUs (taskset on
# every process of the host, floors included), as two machines would have:
# unpinned, the scheduler may run both hosts' daemons on one CPU while the
# other idles (bench/README.md, "Reading the results").
#
# Needs root and the meson build (MESON_BUILD, default build/meson; e.g.
# MESON_BUILD=$PWD/build/meson-bench).  The testbed is torn down on every exit
# path; the end of the output checks that no dshmb-* namespace is left.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
CMDLINE=$(printf '%q ' "$0" "$@")

POLL_US=200
REPS=3
PAGES=4096
PASSES=1
LOCK_ITERS=2000
LOCK_ITERS_256=200
WB_PAGES=1024
WB_ROUNDS=40
TCP_ITERS=10000
TCP_BYTES=$((1 << 30))
OUT=""
PIN_HOSTS=0
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    if [ "$1" = --pin-hosts ]; then
        PIN_HOSTS=1
        shift
        continue
    fi
    [ $# -ge 2 ] || usage
    case $1 in
        --poll-us) POLL_US=$2 ;;
        --reps) REPS=$2 ;;
        --pages) PAGES=$2 ;;
        --passes) PASSES=$2 ;;
        --lock-iters) LOCK_ITERS=$2 ;;
        --lock-iters-256) LOCK_ITERS_256=$2 ;;
        --wb-pages) WB_PAGES=$2 ;;
        --wb-rounds) WB_ROUNDS=$2 ;;
        --tcp-iters) TCP_ITERS=$2 ;;
        --tcp-bytes) TCP_BYTES=$2 ;;
        --out) OUT=$2 ;;
        *) usage ;;
    esac
    shift 2
done
[ "$POLL_US" -gt 0 ] || { echo "--poll-us must be > 0 (0 is the blocking mode, always measured)" >&2; exit 2; }

# Our own testbed instance, never the test suite's (prefix dshm, 198.18.0).
export TB_PREFIX=${TB_PREFIX:-dshmb} TB_NET=${TB_NET:-198.18.1}
# shellcheck source=lib.sh
source "$HERE/lib.sh"

UFFD_FLOOR=$MESON_BUILD/bench/uffd_floor
TCP_FLOOR=$MESON_BUILD/bench/tcp_floor
COMPARE_FLOOR=$MESON_BUILD/bench/compare_floor
DSHM_BENCH=$MESON_BUILD/bench/dshm_bench
for f in "$UFFD_FLOOR" "$TCP_FLOOR" "$COMPARE_FLOOR" "$DSHM_BENCH" "$DSHMD" "$DSHMCTL" "$TB_REAPER"; do
    [ -x "$f" ] || { echo "$f is missing: build it (ninja -C $MESON_BUILD)" >&2; exit 1; }
done
bench_prepare dshmd
# Everything below goes to the terminal and to $OUT (tee -i survives Ctrl-C,
# so the teardown's messages are kept).
exec {TTY_FD}>&1
exec > >(tee -i "$OUT") 2>&1
TEE_PID=$!

SOCK=/run/dshm/dshmd.sock
CLK_TCK=$(getconf CLK_TCK)
# record TAGS LINE...: keeps a measurement line (key=value words) for the summary.
record() {
    local tags=$1 line
    shift
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        printf '  %s\n' "$line"
        printf '%s %s\n' "$tags" "$line" >>"$RES"
    done <<<"$*"
}

echo "# dshmd benchmark: $CMDLINE"
echo "# date: $(date -Is)  kernel: $(uname -r)  nproc: $(nproc)  cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)"
echo "# build: $MESON_BUILD  commit: $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$TOP" diff --quiet HEAD -- hostd 2>/dev/null || echo ' (hostd modified in the working tree)')"
echo "# testbed: TB_PREFIX=$TB_PREFIX TB_NET=$TB_NET; reps=$REPS poll-us=$POLL_US pages=$PAGES passes=$PASSES"
echo "# cpus: $(bench_cpus_line)"
echo "#   lock-iters=$LOCK_ITERS (256 dirty: $LOCK_ITERS_256) wb-pages=$WB_PAGES wb-rounds=$WB_ROUNDS tcp-iters=$TCP_ITERS tcp-bytes=$TCP_BYTES"
echo "# load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

tb_init 2
H1=$(tb_addr h1)
RES=$TB_STATE/results.txt  # measurement lines for the summary (gone with the testbed)

# ------------------------------------------------------------------ floors

run_floors() {
    local rep=$1 out port i
    echo "-- rep $rep: uffd_floor on h1 (4096 pages, blocking, busy-poll and dshmd-io resolver)"
    out=$(tb_run h1 $(bench_pin h1) "$UFFD_FLOOR" --pages "$PAGES" --mode all)
    record "rep=$rep kind=floor" "$(grep -E '^(uffd_fault|shmem_minor_fault) ' <<<"$out")"

    echo "-- rep $rep: tcp_floor h2 -> h1 ($H1): rtt 64 B / 4 KiB x $TCP_ITERS, stream $TCP_BYTES bytes, $WB_PAGES pages shmem to shmem x $WB_ROUNDS"
    port=$(bench_tcp_server h1 $(bench_pin h1)) || t_fail "no tcp_floor server"
    out=$(tb_run h2 $(bench_pin h2) "$TCP_FLOOR" client --connect "$H1:$port" --iterations "$TCP_ITERS" \
        --reply 4096 --request 64 --throughput "$TCP_BYTES" --mode both --timeout 300 \
        --transfer $((WB_PAGES * 4096)) --transfer-rounds "$WB_ROUNDS")
    record "rep=$rep kind=floor" "$(grep -E '^tcp_' <<<"$out")"
    bench_tcp_server_gone h1

    echo "-- rep $rep: uffd_floor on h2 fetching each page from tcp_floor on h1 (the floors composed; blocking and on dshmd's I/O thread)"
    port=$(bench_tcp_server h1 $(bench_pin h1)) || t_fail "no tcp_floor server"
    out=$(tb_run h2 $(bench_pin h2) "$UFFD_FLOOR" --pages "$PAGES" --mode none --relay "$H1:$port")
    record "rep=$rep kind=floor" "$(grep -E '^uffd_fault ' <<<"$out")"
    bench_tcp_server_gone h1

    echo "-- rep $rep: compare_floor on h2 ($WB_PAGES pages: a write-back's page/twin compare, beside a copy)"
    out=$(tb_run h2 $(bench_pin h2) "$COMPARE_FLOOR" --pages "$WB_PAGES" --reps 5)
    record "rep=$rep kind=floor" "$(grep -E '^compare_floor ' <<<"$out")"
}

# ------------------------------------------------------------------ dshm

# dshmd_cpu HOST: utime+stime (clock ticks, every thread dshmd ever ran)
# and schedstat run time (ns, summed over the threads alive now: the loop
# thread and the I/O thread, which live as long as dshmd) of HOST's dshmd,
# read through the host's own /proc (host-local pid).
dshmd_cpu() {
    local pid
    pid=$(cat "$TB_STATE/$1/dshmd.pid")
    tb_run "$1" sh -c 'set -- "$1" $(cat /proc/$1/stat | sed "s/.*) //"); echo "$(( ${13} + ${14} )) $(cat /proc/$1/task/*/schedstat | awk "{ s += \$1 } END { printf \"%.0f\", s }")"' sh "$pid"
}

stop_cluster() {
    local h i
    for h in h1 h2; do tb_kill "$h" dshmd TERM || true; done
    for h in h1 h2; do
        for i in $(seq 1 100); do tb_alive "$h" dshmd || break; sleep 0.05; done
        tb_alive "$h" dshmd && { tb_kill "$h" dshmd KILL || true; sleep 0.2; }
    done
    return 0
}

run_dshm() {
    local rep=$1 poll=$2 mode tags out fault_pages
    mode=$([ "$poll" = 0 ] && echo blocking || echo "poll$poll")
    tags="rep=$rep kind=dshm mode=$mode poll_us=$poll"
    fault_pages=$((PAGES * PASSES))
    ds_cluster 2 "faults:$((fault_pages * 4096)):1 locks:2M:1 wb:$((WB_PAGES * 4096)):1" "poll-us = $poll\nread-ahead-pages = 0"
    bench_pin_dshmd h1 h2
    echo "-- rep $rep: dshmd poll-us=$poll ($mode): remote faults, client on h2, segment owned by h1"
    local c1a c2a c1b c2b
    read -r -a c1a <<<"$(dshmd_cpu h1)"
    read -r -a c2a <<<"$(dshmd_cpu h2)"
    out=$(tb_run h2 $(bench_pin h2) "$DSHM_BENCH" faults --socket "$SOCK" --segment faults --pages "$PAGES" --passes "$PASSES")
    read -r -a c1b <<<"$(dshmd_cpu h1)"
    read -r -a c2b <<<"$(dshmd_cpu h2)"
    record "$tags" "$(grep -E '^remote_fault n=' <<<"$out")"
    local fetched
    fetched=$(ds_stat h2 faults fetches_sent)
    [ "$fetched" = "$fault_pages" ] || t_fail "expected $fault_pages fetches, dshmd on h2 counted $fetched"
    record "$tags" "$(awk -v t="$CLK_TCK" -v n="$fault_pages" \
        -v u1=$((c1b[0] - c1a[0])) -v u2=$((c2b[0] - c2a[0])) -v s1=$((c1b[1] - c1a[1])) -v s2=$((c2b[1] - c2a[1])) \
        'BEGIN { printf "dshmd_cpu faults=%d owner_h1_s=%.3f client_h2_s=%.3f total_s=%.3f us_per_fault=%.2f sched_owner_h1_s=%.3f sched_client_h2_s=%.3f sched_us_per_fault=%.2f\n",
                 n, u1 / t, u2 / t, (u1 + u2) / t, (u1 + u2) / t * 1e6 / n, s1 / 1e9, s2 / 1e9, (s1 + s2) / 1e3 / n }')"

    echo "-- rep $rep: dshmd poll-us=$poll ($mode): lock 0 round trips (owner h1, client h2)"
    local k iters
    for k in 0 1 256; do
        iters=$([ "$k" = 256 ] && echo "$LOCK_ITERS_256" || echo "$LOCK_ITERS")
        out=$(tb_run h2 $(bench_pin h2) "$DSHM_BENCH" lock --socket "$SOCK" --segment locks --dirty "$k" --iterations "$iters")
        record "$tags" "$(grep -E '^lock_rtt ' <<<"$out")"
    done

    echo "-- rep $rep: dshmd poll-us=$poll ($mode): write-back of $WB_PAGES full pages x $WB_ROUNDS rounds"
    out=$(tb_run h2 $(bench_pin h2) "$DSHM_BENCH" writeback --socket "$SOCK" --segment wb --pages "$WB_PAGES" --rounds "$WB_ROUNDS")
    record "$tags" "$(grep -E '^writeback ' <<<"$out")"
    stop_cluster
}

for rep in $(seq 1 "$REPS"); do
    echo "== repetition $rep of $REPS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    run_floors "$rep"
    run_dshm "$rep" 0
    run_dshm "$rep" "$POLL_US"
done

# ------------------------------------------------------------------ summary

echo
python3 - "$RES" "$POLL_US" <<'EOF'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    w = line.split()
    d = {}
    for t in w:
        if '=' in t:
            k, v = t.split('=', 1)
            d[k] = v
        else:
            d['what'] = t
    rows.append(d)
poll = sys.argv[2]
mpoll = 'poll' + poll

def vals(what, key, **match):
    out = []
    for r in rows:
        if r.get('what') == what and all(r.get(k) == v for k, v in match.items()):
            out.append(float(r[key]))
    return out

def med(what, key, **match):
    v = vals(what, key, **match)
    if not v:
        return float('nan')
    return statistics.median(v)

def spread(what, key, **match):
    v = vals(what, key, **match)
    if not v:
        return 'n/a'
    return '%.1f..%.1f' % (min(v), max(v))

reps = len(set(r['rep'] for r in rows))
print('== summary: medians over %d repetition(s); [min..max] across repetitions' % reps)
print()
print('floors')
notes = {'io': "  (resolver on dshmd's I/O thread: not a floor)",
         'relay': '  (resolver fetches each page from tcp_floor on h1: the floors composed, not a floor)',
         'io-relay': "  (the same on dshmd's I/O thread on h2: not a floor)"}
for m in ('blocking', 'busypoll', 'io', 'relay', 'io-relay'):
    print('  uffd fault   %-10s p50 %7.2f us [%s]  p99 %7.2f us [%s]%s' % (m, med('uffd_fault', 'p50_us', mode=m),
          spread('uffd_fault', 'p50_us', mode=m), med('uffd_fault', 'p99_us', mode=m), spread('uffd_fault', 'p99_us', mode=m),
          notes.get(m, '')))
for m in ('blocking', 'busypoll'):
    print('  tcp rtt 4K   %-10s p50 %7.2f us [%s]  p99 %7.2f us [%s]' % (m, med('tcp_rtt', 'p50_us', mode=m),
          spread('tcp_rtt', 'p50_us', mode=m), med('tcp_rtt', 'p99_us', mode=m), spread('tcp_rtt', 'p99_us', mode=m)))
for m in ('blocking', 'busypoll'):
    print('  tcp stream   %-10s %8.1f MB/s [%s]' % (m, med('tcp_throughput', 'mb_per_s', mode=m), spread('tcp_throughput', 'mb_per_s', mode=m)))
for m in ('blocking', 'busypoll'):
    print('  tcp transfer %-10s %8.1f MB/s [%s]  (shmem to shmem, one round trip per write-back\'s bytes)' % (
        m, med('tcp_transfer', 'mb_per_s', mode=m), spread('tcp_transfer', 'mb_per_s', mode=m)))
print()
print('dshm (client on h2, segments owned by h1)')
hdr = '  %-34s %22s %22s' % ('', 'poll-us=0 (blocking)', 'poll-us=%s' % poll)
print(hdr)
def line(label, what, key, fmt='%.2f', **match):
    cells = []
    for m in ('blocking', mpoll):
        v = med(what, key, mode=m, **match)
        cells.append((fmt % v) + ' [' + spread(what, key, mode=m, **match) + ']')
    print('  %-34s %22s %22s' % (label, cells[0], cells[1]))
line('remote fault p50 us', 'remote_fault', 'p50_us')
line('remote fault p90 us', 'remote_fault', 'p90_us')
line('remote fault p99 us', 'remote_fault', 'p99_us')
line('remote fault mean us', 'remote_fault', 'mean_us')
for k in ('0', '1', '256'):
    line('lock dirty=%s acquire p50 us' % k, 'lock_rtt', 'acquire_p50_us', dirty=k)
    line('lock dirty=%s release p50 us' % k, 'lock_rtt', 'release_p50_us', dirty=k)
    line('lock dirty=%s total p50 us' % k, 'lock_rtt', 'total_p50_us', dirty=k)
    line('lock dirty=%s total p99 us' % k, 'lock_rtt', 'total_p99_us', dirty=k)
line('write-back MB/s', 'writeback', 'mb_per_s', '%.1f')
line('write-back release p50 ms', 'writeback', 'release_p50_ms', '%.2f')
line('dshmd CPU s over faults (h1+h2)', 'dshmd_cpu', 'total_s', '%.3f')
line('  owner h1 s', 'dshmd_cpu', 'owner_h1_s', '%.3f')
line('  client h2 s', 'dshmd_cpu', 'client_h2_s', '%.3f')
line('dshmd CPU us per fault', 'dshmd_cpu', 'us_per_fault', '%.2f')
line('  (schedstat) us per fault', 'dshmd_cpu', 'sched_us_per_fault', '%.2f')
print()

ub50, ub99 = med('uffd_fault', 'p50_us', mode='blocking'), med('uffd_fault', 'p99_us', mode='blocking')
tb50, tb99 = med('tcp_rtt', 'p50_us', mode='blocking'), med('tcp_rtt', 'p99_us', mode='blocking')
up50, tp50 = med('uffd_fault', 'p50_us', mode='busypoll'), med('tcp_rtt', 'p50_us', mode='busypoll')
raw_b, raw_p = med('tcp_throughput', 'mb_per_s', mode='blocking'), med('tcp_throughput', 'mb_per_s', mode='busypoll')
f50, f99 = med('remote_fault', 'p50_us', mode='blocking'), med('remote_fault', 'p99_us', mode='blocking')
l50 = med('remote_fault', 'p50_us', mode=mpoll)
wb_b, wb_p = med('writeback', 'mb_per_s', mode='blocking'), med('writeback', 'mb_per_s', mode=mpoll)
raw = raw_b
targets = [
    ('remote fault p50 (blocking) <= 1.5 x (uffd+tcp blocking p50)', f50, ub50 + tb50, 1.5, 'le'),
    ('remote fault p99 (blocking) <= 4 x (uffd+tcp blocking p99)', f99, ub99 + tb99, 4.0, 'le'),
    ('remote fault p50 (poll-us=%s) <= 2 x (uffd+tcp busy-poll p50)' % poll, l50, up50 + tp50, 2.0, 'le'),
    ('write-back MB/s (blocking) >= 0.7 x raw TCP (blocking)', wb_b, raw, 0.7, 'ge'),
    ('write-back MB/s (poll-us=%s) >= 0.7 x raw TCP (blocking)' % poll, wb_p, raw, 0.7, 'ge'),
]
print('targets (issue 3)')
print('  %-64s %10s %10s %7s %7s  %s' % ('target', 'dshm', 'floor', 'ratio', 'limit', 'verdict'))
for name, v, floor, lim, how in targets:
    ratio = v / floor if floor else float('nan')
    ok = ratio <= lim if how == 'le' else ratio >= lim
    print('  %-64s %10.2f %10.2f %7.2f %7.2f  %s' % (name, v, floor, ratio, lim, 'PASS' if ok else 'MISS'))
print('  (write-back vs raw TCP busy-poll %.1f MB/s: blocking %.2f, poll-us=%s %.2f)' % (raw_p, wb_b / raw_p, poll, wb_p / raw_p))
rl50, ll50 = med('uffd_fault', 'p50_us', mode='relay'), med('uffd_fault', 'p50_us', mode='io-relay')
print('  (remote fault p50, blocking: floors composed (relay) %.2f us = %.2f x their sum; on dshmd\'s I/O '
      'thread (io-relay) %.2f us = %.2f x relay; dshm %.2f us = %.2f x io-relay)' % (
          rl50, rl50 / (ub50 + tb50), ll50, ll50 / rl50, f50, f50 / ll50))
# Raw TCP swings by 2x between repetitions on a shared VM: the same ratio
# per repetition (its own TCP stream, a minute apart at most), for the spread.
def paired(mode):
    out = []
    for rep in sorted(set(r['rep'] for r in rows), key=int):
        t = vals('tcp_throughput', 'mb_per_s', mode='blocking', rep=rep)
        w = vals('writeback', 'mb_per_s', mode=mode, rep=rep)
        if t and w:
            out.append(w[0] / t[0])
    return out
for label, mode in (('blocking', 'blocking'), ('poll-us=%s' % poll, mpoll)):
    r = paired(mode)
    if r:
        print('  (write-back / raw TCP of the same repetition, %s: %s; median %.2f)' % (
            label, ' '.join('%.2f' % x for x in r), statistics.median(r)))
tr_b, tr_p = med('tcp_transfer', 'mb_per_s', mode='blocking'), med('tcp_transfer', 'mb_per_s', mode='busypoll')
if tr_b == tr_b:
    print('  (write-back vs TCP moving the same bytes shmem to shmem, one round trip each (tcp transfer): '
          'blocking %.2f of %.1f MB/s, poll-us=%s %.2f of %.1f MB/s busy-polling)' % (
              wb_b / tr_b, tr_b, poll, wb_p / tr_p, tr_p))
# What twin/diff costs before any of dshmd's work: the sending host reads
# each released page and its twin (compare_floor, caches cold) on the thread
# that also makes the sends raw TCP makes.
cmp_us = vals('compare_floor', 'compare_us', state='cold')
wb_pages = vals('writeback', 'pages', mode='blocking')
if cmp_us and wb_pages and raw:
    c = statistics.median(cmp_us) / 1000
    t = wb_pages[0] * 4096 / raw / 1000
    print('  (write-back: the page/twin compare of one release costs %.2f ms here (compare_floor, cold), '
          'raw TCP moves its %d KiB in %.2f ms: with the compare alone in series, write-back / raw TCP '
          '<= %.2f)' % (c, wb_pages[0] * 4, t, t / (t + c)))
EOF

echo
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
tb_teardown
left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${TB_PREFIX}-" || true)
echo "# teardown: $([ -z "$left" ] && echo "clean (no ${TB_PREFIX}-* namespaces left)" || echo "LEFT: $left")"
echo "# results written to $OUT"
exec >&"$TTY_FD" 2>&1
wait "$TEE_PID" 2>/dev/null || true
