#!/usr/bin/env bash
# bench/idle-metadata.sh: what an idle segment costs dshmd (protocol.md §2,
# "Idle metadata"): start-up time, resident memory and a dshmctl query,
# for one or more dshmd builds side by side, in one run.
#
#   bench/idle-metadata.sh [--size 64G] [--queries N] [--reps R] [--out FILE]
#                          BUILD_DIR...
#
# BUILD_DIR: a meson build directory holding hostd/dshmd and
# hostd/client/dshmctl (the first is the baseline, e.g. the build of a
# `git worktree` at main; then e.g. build/meson).  For each build, R times
# (default 3), interleaved, and for each role of this host (the segment's
# owner; not its owner, the owner unreachable): one dshmd on this host alone
# (no testbed, no root needed: loopback addresses, a temporary directory)
# with one segment of --size (default 64G: a memfd of that size is sparse,
# so it fits on any machine), and measures
#   start_ms   exec to READY=1 on NOTIFY_SOCKET (the daemon serves);
#   rss_mb     VmRSS at READY (and VmHWM, the peak);
#   query_ms   `dshmctl segments` wall time, median of N (default 5) runs
#              (the main loop answers it: the stall every client of the
#              host sees meanwhile);
# then prints medians [min..max] per build and role.  Output also to FILE
# (default bench/results/idle-metadata-YYYYMMDD-HHMMSS.txt) with the
# command, each build's commit and `uname -r`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
CMDLINE=$(printf '%q ' "$0" "$@")
SIZE=64G
QUERIES=5
REPS=3
OUT=""
BUILDS=()
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --queries) QUERIES=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) usage ;;
        *) BUILDS+=("$(cd "$1" && pwd)"); shift ;;
    esac
done
[ ${#BUILDS[@]} -ge 1 ] || usage
mkdir -p "$TOP/bench/results"
OUT=${OUT:-$TOP/bench/results/idle-metadata-$(date -u +%Y%m%d-%H%M%S).txt}
exec > >(tee "$OUT") 2>&1

echo "# command: $CMDLINE"
echo "# date: $(date -u +%FT%TZ)  kernel: $(uname -r)  cpus: $(nproc)"
for b in "${BUILDS[@]}"; do
    src=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["directories"]["source"])' \
        "$b/meson-info/meson-info.json" 2>/dev/null || echo "?")
    commit=$(git -C "$src" describe --always --dirty 2>/dev/null || echo "?")
    echo "# build: $b (source $src, commit $commit now; dshmd built $(date -u -r "$b/hostd/dshmd" +%FT%TZ))"
done
echo "# segment size: $SIZE, queries: $QUERIES, repetitions: $REPS"

WORK=$(mktemp -d /tmp/idle-metadata.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# One measurement: prints "start_ms rss_kb hwm_kb query_ms".
measure() {  # BUILD OWNER
    local b=$1 owner=$2 dir port
    dir=$(mktemp -d "$WORK/run.XXXX")
    port=$((20000 + RANDOM % 20000))
    cat >"$dir/dshmd.conf" <<CONF
[dshmd]
host-id = 1
listen = 127.0.0.1:$port
socket = $dir/dshmd.sock
[peer h2]
host-id = 2
address = 127.0.0.1:$((port + 1))
[segment big]
size = $SIZE
owner = $owner
CONF
    python3 - "$b/hostd/dshmd" "$b/hostd/client/dshmctl" "$dir" "$QUERIES" <<'PY'
import os, socket, statistics, subprocess, sys, time
dshmd, dshmctl, d, nq = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ns = os.path.join(d, "notify")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(ns)
env = dict(os.environ, NOTIFY_SOCKET=ns)
t0 = time.monotonic()
p = subprocess.Popen([dshmd, "--config", os.path.join(d, "dshmd.conf")], env=env,
                     stdout=open(os.path.join(d, "log"), "w"), stderr=subprocess.STDOUT)
s.settimeout(300)
try:
    while True:
        msg = s.recv(4096).decode()
        if "READY=1" in msg.split("\n"):
            break
    start_ms = (time.monotonic() - t0) * 1000
    st = {}
    for line in open(f"/proc/{p.pid}/status"):
        k, v = line.split(":", 1)
        st[k] = (v.split() or [""])[0]
    qs = []
    for _ in range(nq):
        t = time.monotonic()
        subprocess.run([dshmctl, "--socket", os.path.join(d, "dshmd.sock"), "--json",
                        "segments"], check=True, stdout=subprocess.DEVNULL)
        qs.append((time.monotonic() - t) * 1000)
    print(f"{start_ms:.1f} {st['VmRSS']} {st['VmHWM']} {statistics.median(qs):.2f}")
finally:
    p.terminate()
    p.wait()
PY
}

declare -A RES
for rep in $(seq 1 "$REPS"); do
    for i in "${!BUILDS[@]}"; do
        for role in owner other; do
            owner=1
            [ $role = other ] && owner=2
            r=$(measure "${BUILDS[$i]}" $owner)
            echo "rep=$rep build=$i role=$role start_ms rss_kb hwm_kb query_ms: $r"
            RES[$i.$role]+="$r"$'\n'
        done
    done
done

echo
echo "# medians [min..max] over $REPS repetitions"
for i in "${!BUILDS[@]}"; do
    for role in owner other; do
        printf '%s' "${RES[$i.$role]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
names = ["start_ms", "rss_mb", "hwm_mb", "query_ms"]
cols = list(zip(*rows))
out = []
for n, c in zip(names, cols):
    if n.endswith("_mb"):
        c = [x / 1024 for x in c]
    out.append(f"{n}={statistics.median(c):.1f} [{min(c):.1f}..{max(c):.1f}]")
print(f"build {sys.argv[1]} ({sys.argv[2]}) role {sys.argv[3]}: " + "  ".join(out))
' "$i" "${BUILDS[$i]}" "$role"
    done
done
