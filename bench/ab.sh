#!/usr/bin/env bash
# bench/ab.sh: two (or more) dshmd builds, or settings, side by side,
# interleaved, so that a change is judged against the machine's drift rather
# than against a result of another hour.
#
#   sudo bench/ab.sh [--reps R] [--poll-us N] [--pages N] [--wb-pages P]
#                    [--wb-rounds R] [--dirty K] [--idle K] [--pin-hosts]
#                    [--out FILE] VARIANT...
#
# VARIANT: BUILD_DIR[@KEY=VALUE...]: a meson build directory holding
# hostd/dshmd, bench/dshm_bench, hostd/client/dshmctl and tests/tb-reaper
# (e.g. build/meson of a `git worktree` at the commit to compare with), and
# optionally [dshmd] settings for this variant (e.g.
# build/meson@write-ahead-pages=0; h1:KEY=VALUE for host h1 alone, e.g.
# build/meson@h1:poll-us=200).  Each repetition runs every variant in
# turn on the same 2 simulated hosts (TB_PREFIX=dshma, TB_NET=198.18.5):
# dshmd on h1 and h2 with poll-us = N (default 0), segments owned by h1,
# dshm_bench on h2: remote read faults (N pages, default 4096), lock round
# trips with K dirty pages (default 256, 200 iterations) and write-back of
# P full pages x R rounds (1024 x 40);
# --idle K: K more clients attached on h2 during the faults, idle (as idle
# VMs would be: each one more socket and userfaultfd for dshmd to watch).
# Prints per variant the medians over the repetitions [min..max] and the
# ratio of each median to the first variant's.  Output also to FILE
# (default bench/results/ab-YYYYMMDD-HHMMSS.txt).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
CMDLINE=$(printf '%q ' "$0" "$@")
REPS=5
POLL_US=0
PAGES=4096
WB_PAGES=1024
WB_ROUNDS=40
DIRTY=256
IDLE=0
OUT=""
BUILDS=()
SETTINGS=()
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --pin-hosts) PIN_HOSTS=1; shift; continue ;;
        --reps|--poll-us|--pages|--wb-pages|--wb-rounds|--dirty|--idle|--out) [ $# -ge 2 ] || usage ;;
        -*) usage ;;
        *) BUILDS+=("$(cd "${1%%@*}" && pwd)"); SETTINGS+=("$(sed -n 's/^[^@]*@//p' <<<"$1" | tr '@' '\n')"); shift; continue ;;
    esac
    case $1 in
        --reps) REPS=$2 ;;
        --poll-us) POLL_US=$2 ;;
        --pages) PAGES=$2 ;;
        --wb-pages) WB_PAGES=$2 ;;
        --wb-rounds) WB_ROUNDS=$2 ;;
        --idle) IDLE=$2 ;;
        --dirty) DIRTY=$2 ;;
        --out) OUT=$2 ;;
    esac
    shift 2
done
[ ${#BUILDS[@]} -ge 1 ] || usage
export PIN_HOSTS=${PIN_HOSTS:-0}

export TB_PREFIX=${TB_PREFIX:-dshma} TB_NET=${TB_NET:-198.18.5}
export MESON_BUILD=${BUILDS[0]}
# shellcheck source=lib.sh
source "$HERE/lib.sh"
for b in "${BUILDS[@]}"; do
    for f in hostd/dshmd bench/dshm_bench hostd/client/dshmctl tests/tb-reaper; do
        [ -x "$b/$f" ] || { echo "$b/$f is missing: build it (ninja -C $b)" >&2; exit 1; }
    done
done
bench_prepare ab
# host_conf HOST SETTINGS: the [dshmd] lines of HOST: poll-us and
# read-ahead-pages = 0 (each access a remote fault; builds before read-ahead
# ignore the key), the shared
# KEY=VALUE settings, then HOST's own (HOST:KEY=VALUE); a key given again
# replaces the earlier one in place (dshmd refuses a key set twice).
host_conf() {
    { echo "poll-us=$POLL_US"; echo "read-ahead-pages=0"; grep -v '^h[0-9]*:' <<<"$2" || true; sed -n "s/^$1://p" <<<"$2"; } |
        awk -F= 'NF >= 2 { k = $1; gsub(/ /, "", k); if (!(k in v)) order[++n] = k; v[k] = $0 }
                 END { for (j = 1; j <= n; j++) print v[order[j]] }'
}
exec > >(tee -i "$OUT") 2>&1
echo "# dshmd A/B: $CMDLINE"
bench_machine_line
for i in "${!BUILDS[@]}"; do
    b=${BUILDS[$i]}
    echo "# build $i: $b ($(git -C "$b" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$b" diff --quiet HEAD -- ':/hostd' 2>/dev/null || echo ', hostd modified'))${SETTINGS[$i]:+ with $(tr '\n' ' ' <<<"${SETTINGS[$i]}")}"
done
echo "# reps=$REPS poll-us=$POLL_US pages=$PAGES idle=$IDLE dirty=$DIRTY wb=${WB_PAGES}x$WB_ROUNDS cpus: $(bench_cpus_line)"
echo "# load at start: $(cut -d' ' -f1-3 /proc/loadavg)"

tb_init 2
RES=$TB_STATE/ab.txt
SOCK=/run/dshm/dshmd.sock
for rep in $(seq 1 "$REPS"); do
    for i in "${!BUILDS[@]}"; do
        MESON_BUILD=${BUILDS[$i]}
        DSHMD=$MESON_BUILD/hostd/dshmd DSHMCTL=$MESON_BUILD/hostd/client/dshmctl
        bench=$MESON_BUILD/bench/dshm_bench
        # hN:KEY=VALUE settings are for host hN alone (DSHM_CONF_hN), after
        # the shared ones, so they win.
        DSHM_CONF_h1=$(host_conf h1 "${SETTINGS[$i]}") DSHM_CONF_h2=$(host_conf h2 "${SETTINGS[$i]}") \
            ds_cluster 2 "faults:$((PAGES * 4096)):1 wb:$((WB_PAGES * 4096)):1 lk:$(((DIRTY > 0 ? DIRTY : 1) * 4096)):1"
        bench_pin_dshmd h1 h2
        f=$(tb_run h2 $(bench_pin h2) "$bench" faults --socket "$SOCK" --segment faults --pages "$PAGES" --idle "$IDLE" | grep '^remote_fault ')
        l=$(tb_run h2 $(bench_pin h2) "$bench" lock --socket "$SOCK" --segment lk --dirty "$DIRTY" --iterations 200 | grep '^lock_rtt ')
        w=$(tb_run h2 $(bench_pin h2) "$bench" writeback --socket "$SOCK" --segment wb --pages "$WB_PAGES" --rounds "$WB_ROUNDS" | grep '^writeback ')
        echo "rep $rep build $i: $f"
        echo "rep $rep build $i: $l"
        echo "rep $rep build $i: $w"
        echo "build=$i $f $l $w" >>"$RES"
        for h in h1 h2; do tb_kill "$h" dshmd TERM || true; done
        for h in h1 h2; do
            for k in $(seq 1 100); do tb_alive "$h" dshmd || break; sleep 0.05; done
        done
    done
done

python3 - "$RES" "${#BUILDS[@]}" <<'PY'
import statistics, sys
rows = [dict(t.split('=', 1) for t in line.split() if '=' in t) for line in open(sys.argv[1])]
n = int(sys.argv[2])
keys = [('p50_us', 'remote fault p50 us'), ('p99_us', 'remote fault p99 us'),
        ('total_p50_us', 'lock + K dirty pages p50 us'), ('release_p50_us', 'lock release p50 us'),
        ('mb_per_s', 'write-back MB/s'), ('release_p50_ms', 'write-back release p50 ms')]
print()
print('== medians over the repetitions [min..max]; (ratio to build 0)')
for key, label in keys:
    base = None
    cells = []
    for b in range(n):
        v = [float(r[key]) for r in rows if r['build'] == str(b)]
        m = statistics.median(v)
        base = m if base is None else base
        cells.append('%9.2f [%.1f..%.1f] (%.2f)' % (m, min(v), max(v), m / base))
    print('  %-26s %s' % (label, '   '.join(cells)))
PY
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
tb_teardown
