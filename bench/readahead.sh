#!/usr/bin/env bash
# bench/readahead.sh: read-ahead on the fault path (docs/protocol.md §3).
#
#   sudo bench/readahead.sh [--reps R] [--seq-mb M] [--rnd-pages N]
#                           [--ra "0 64 1024"] [--tcp-bytes B] [--tcp-iters N]
#                           [--out FILE] [--pin-hosts]
#
# Creates 2 simulated hosts (a SEPARATE testbed instance: TB_PREFIX=dshmr,
# TB_NET=198.18.4 unless set) and, R times, interleaved, measures:
#   floors    tcp_floor h2 -> h1: stream throughput and 64 B / 4 KiB RTT
#             (blocking); uffd_floor on h2 (blocking resolver): a remote
#             fault's blocking floor is their two p50s summed;
#   dshm      for each read-ahead-pages value of --ra (default 0 64 1024),
#             dshmd poll-us = 0, segments owned by h1: a cold sequential
#             read of M MiB (default 64) by a host-level client on h2
#             (dshm_bench seqread, after dshm_bench fill on h1: every byte
#             read, the first u64 of every page checked), MB/s; then cold
#             random single-page faults (dshm_bench faults --random 1, N
#             pages, default 2048) on another segment, p50/p99; dshmd's
#             read-ahead counters of both runs.
# then prints medians [min..max] over the repetitions and the issue's
# targets: sequential read >= 0.5 x raw TCP (per repetition, each against
# its own TCP run); random fault p50 <= 1.5 x the blocking floor, with
# read-ahead on as with it off.  Output: terminal and
# bench/results/readahead-YYYYMMDD-HHMMSS.txt (or --out FILE).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
CMDLINE=$(printf '%q ' "$0" "$@")

REPS=5
SEQ_MB=64
RND_PAGES=2048
RA_LIST="0 64 1024"
TCP_BYTES=$((1 << 30))
TCP_ITERS=5000
OUT=""
PIN_HOSTS=0
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    if [ "$1" = --pin-hosts ]; then
        PIN_HOSTS=1
        shift
        continue
    fi
    [ $# -ge 2 ] || usage
    case $1 in
        --reps) REPS=$2 ;;
        --seq-mb) SEQ_MB=$2 ;;
        --rnd-pages) RND_PAGES=$2 ;;
        --ra) RA_LIST=$2 ;;
        --tcp-bytes) TCP_BYTES=$2 ;;
        --tcp-iters) TCP_ITERS=$2 ;;
        --out) OUT=$2 ;;
        *) usage ;;
    esac
    shift 2
done

export TB_PREFIX=${TB_PREFIX:-dshmr} TB_NET=${TB_NET:-198.18.4}
# shellcheck source=lib.sh
source "$HERE/lib.sh"

UFFD_FLOOR=$MESON_BUILD/bench/uffd_floor
TCP_FLOOR=$MESON_BUILD/bench/tcp_floor
DSHM_BENCH=$MESON_BUILD/bench/dshm_bench
for f in "$UFFD_FLOOR" "$TCP_FLOOR" "$DSHM_BENCH" "$DSHMD" "$DSHMCTL" "$TB_REAPER"; do
    [ -x "$f" ] || { echo "$f is missing: build it (ninja -C $MESON_BUILD)" >&2; exit 1; }
done
bench_prepare readahead
exec {TTY_FD}>&1
exec > >(tee -i "$OUT") 2>&1
TEE_PID=$!

SOCK=/run/dshm/dshmd.sock
SEQ_PAGES=$((SEQ_MB * 256))
record() {
    local tags=$1 line
    shift
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        printf '  %s\n' "$line"
        printf '%s %s\n' "$tags" "$line" >>"$RES"
    done <<<"$*"
}

echo "# read-ahead benchmark: $CMDLINE"
bench_machine_line
echo "# build: $MESON_BUILD$(git -C "$TOP" diff --quiet HEAD -- hostd 2>/dev/null || echo ' (hostd modified in the working tree)')"
echo "# testbed: TB_PREFIX=$TB_PREFIX TB_NET=$TB_NET; reps=$REPS seq=${SEQ_MB} MiB random=$RND_PAGES pages read-ahead-pages: $RA_LIST"
echo "# cpus: $(bench_cpus_line)"
echo "# load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

tb_init 2
H1=$(tb_addr h1)
RES=$TB_STATE/results.txt

stop_cluster() {
    local h i
    for h in h1 h2; do tb_kill "$h" dshmd TERM || true; done
    for h in h1 h2; do
        for i in $(seq 1 100); do tb_alive "$h" dshmd || break; sleep 0.05; done
        tb_alive "$h" dshmd && { tb_kill "$h" dshmd KILL || true; sleep 0.2; }
    done
    return 0
}

run_floors() {
    local rep=$1 out port
    echo "-- rep $rep: tcp_floor h2 -> h1 ($H1): stream $TCP_BYTES bytes, rtt 64 B / 4 KiB x $TCP_ITERS (blocking)"
    port=$(bench_tcp_server h1 $(bench_pin h1)) || t_fail "no tcp_floor server"
    out=$(tb_run h2 $(bench_pin h2) "$TCP_FLOOR" client --connect "$H1:$port" --iterations "$TCP_ITERS" \
        --reply 4096 --request 64 --throughput "$TCP_BYTES" --mode blocking --timeout 300)
    record "rep=$rep kind=floor" "$(grep -E '^tcp_' <<<"$out")"
    bench_tcp_server_gone h1
    echo "-- rep $rep: uffd_floor on h2 (blocking resolver)"
    out=$(tb_run h2 $(bench_pin h2) "$UFFD_FLOOR" --pages "$RND_PAGES" --mode blocking)
    record "rep=$rep kind=floor" "$(grep -E '^uffd_fault ' <<<"$out")"
}

run_dshm() {
    local rep=$1 ra=$2 tags out
    tags="rep=$rep kind=dshm ra=$ra"
    ds_cluster 2 "seq:${SEQ_MB}M:1 rnd:$((RND_PAGES * 4096)):1" "read-ahead-pages = $ra"
    bench_pin_dshmd h1 h2
    out=$(tb_run h1 "$DSHM_BENCH" fill --socket "$SOCK" --segment seq --pages "$SEQ_PAGES")
    echo "-- rep $rep: read-ahead-pages=$ra: $out (h1, the owner)"
    echo "-- rep $rep: read-ahead-pages=$ra: cold sequential read of $SEQ_MB MiB on h2"
    out=$(tb_run h2 $(bench_pin h2) "$DSHM_BENCH" seqread --socket "$SOCK" --segment seq --pages "$SEQ_PAGES") ||
        t_fail "seqread failed: $out"
    record "$tags" "$(grep -E '^seqread ' <<<"$out")"
    record "$tags" "seq_stats read_ahead=$(ds_stat h2 seq read_ahead) used=$(ds_stat h2 seq read_ahead_used) unused=$(ds_stat h2 seq read_ahead_unused) faults=$(ds_stat h2 seq missing_faults) fetches=$(ds_stat h2 seq fetches_sent)"
    echo "-- rep $rep: read-ahead-pages=$ra: cold random single-page faults ($RND_PAGES pages) on h2"
    out=$(tb_run h2 $(bench_pin h2) "$DSHM_BENCH" faults --socket "$SOCK" --segment rnd --pages "$RND_PAGES" --random 1)
    record "$tags" "$(grep -E '^remote_fault n=' <<<"$out")"
    record "$tags" "rnd_stats read_ahead=$(ds_stat h2 rnd read_ahead) faults=$(ds_stat h2 rnd missing_faults) fetches=$(ds_stat h2 rnd fetches_sent)"
    stop_cluster
}

for rep in $(seq 1 "$REPS"); do
    echo "== repetition $rep of $REPS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    run_floors "$rep"
    for ra in $RA_LIST; do run_dshm "$rep" "$ra"; done
done

echo
python3 - "$RES" "$RA_LIST" <<'EOF'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    d = {}
    for t in line.split():
        if '=' in t:
            k, v = t.split('=', 1)
            d[k] = v
        else:
            d['what'] = t
    rows.append(d)
ras = sys.argv[2].split()

def vals(what, key, **m):
    return [float(r[key]) for r in rows if r.get('what') == what and all(r.get(k) == v for k, v in m.items())]

def show(v, fmt='%.1f'):
    if not v:
        return 'n/a'
    return (fmt + ' [' + fmt + '..' + fmt + ']') % (statistics.median(v), min(v), max(v))

reps = sorted(set(r['rep'] for r in rows), key=int)
print('== summary: medians over %d repetition(s) [min..max]' % len(reps))
tcp = vals('tcp_throughput', 'mb_per_s', mode='blocking')
rtt = vals('tcp_rtt', 'p50_us', mode='blocking', reply='4096')
uffd = vals('uffd_fault', 'p50_us', mode='blocking')
floor = [a + b for a, b in zip(uffd, rtt)]
print('  raw TCP stream h2<->h1, blocking: %s MB/s' % show(tcp))
print('  blocking fault floor (uffd p50 + TCP 4 KiB RTT p50): %s us' % show(floor))
for ra in ras:
    seq = vals('seqread', 'mb_per_s', ra=ra)
    ratio = [s / t for s, t in zip(seq, tcp)]
    p50 = vals('remote_fault', 'p50_us', ra=ra)
    p99 = vals('remote_fault', 'p99_us', ra=ra)
    fr = [p / f for p, f in zip(p50, floor)]
    print('  read-ahead-pages=%s:' % ra)
    print('    sequential: %s MB/s; / raw TCP (per rep) %s' % (show(seq), show(ratio, '%.2f')))
    print('      read ahead %s pages, used %s, faults %s' % (
        show(vals('seq_stats', 'read_ahead', ra=ra), '%.0f'), show(vals('seq_stats', 'used', ra=ra), '%.0f'),
        show(vals('seq_stats', 'faults', ra=ra), '%.0f')))
    print('    random fault p50 %s us, p99 %s us; p50 / floor %s; pages read ahead %s' % (
        show(p50), show(p99), show(fr, '%.2f'), show(vals('rnd_stats', 'read_ahead', ra=ra), '%.0f')))
print('== targets')
off = vals('remote_fault', 'p50_us', ra='0')
for ra in ras:
    if ra == '0':
        continue
    seq = vals('seqread', 'mb_per_s', ra=ra)
    ratio = [s / t for s, t in zip(seq, tcp)]
    p50 = vals('remote_fault', 'p50_us', ra=ra)
    fr = [p / f for p, f in zip(p50, floor)]
    if ratio:
        m = statistics.median(ratio)
        print('  read-ahead-pages=%s: sequential / raw TCP = %.2f (>= 0.5: %s; %d of %d reps reach it)' % (
            ra, m, 'PASS' if m >= 0.5 else 'MISS', sum(r >= 0.5 for r in ratio), len(ratio)))
    if fr:
        m = statistics.median(fr)
        print('  read-ahead-pages=%s: random fault p50 / blocking floor = %.2f (<= 1.5: %s); vs off %.2f' % (
            ra, m, 'PASS' if m <= 1.5 else 'MISS',
            statistics.median(p50) / statistics.median(off) if off else float('nan')))
if off and floor:
    print('  read-ahead-pages=0: random fault p50 / blocking floor = %.2f' % (
        statistics.median([p / f for p, f in zip(off, floor)])))
EOF

echo
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
tb_teardown
left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${TB_PREFIX}-" || true)
echo "# teardown: $([ -z "$left" ] && echo "clean (no ${TB_PREFIX}-* namespaces left)" || echo "LEFT: $left")"
echo "# results written to $OUT"
exec >&"$TTY_FD" 2>&1
wait "$TEE_PID" 2>/dev/null || true
