#!/bin/bash
# A long fuzzing campaign: every target (or the named ones) for SECONDS
# each, one after the other on one core, from the tree's corpus plus a
# persistent working corpus in build/fuzz-campaign/TARGET (kept between
# campaigns).  Writes a summary (command, commit, kernel, executions,
# coverage, crashes) to bench/results/fuzz-YYYYMMDD.txt; crash inputs go
# to build/fuzz-campaign/TARGET-crash-*: fix the bug, then add the input
# to fuzz/corpus/TARGET/ (fuzz/README.md).
#
#   fuzz/campaign.sh [-t SECONDS] [TARGET...]     (default 3600 s per target)
#   FUZZ_MERGE=1: afterwards, merge the new inputs that add coverage into
#   build/fuzz-campaign/TARGET.min (to pick seeds for fuzz/corpus by hand).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=3600
if [ "${1:-}" = -t ]; then secs=$2; shift 2; fi
targets=("$@")
[ ${#targets[@]} = 0 ] && targets=(fuzz_peer fuzz_client fuzz_frame fuzz_diff fuzz_config fuzz_domain_xml)
bash fuzz/build.sh build/meson-fuzz >/dev/null || { echo "campaign: build failed" >&2; exit 1; }
out=bench/results/fuzz-$(date -u +%Y%m%d).txt
work=build/fuzz-campaign
mkdir -p "$work" bench/results
{
    echo "# fuzz campaign $(date -u +%FT%TZ)"
    echo "command: fuzz/campaign.sh -t $secs ${targets[*]}"
    echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- hostd fuzz include || echo ' (+ uncommitted changes)')"
    echo "kernel: $(uname -r)"
    echo "build: clang $(clang --version | sed -n '1s/.*version \([0-9.]*\).*/\1/p'), -fsanitize=fuzzer,address,undefined (fuzz/build.sh)"
    echo "one target at a time, one process (-jobs/-workers not used)"
    echo
    echo "cov: edges covered (libFuzzer), of the target's instrumented edges (of: the binary's inline 8-bit counters)"
    printf '%-16s %8s %12s %9s %7s %7s %7s %8s %s\n' target seconds execs exec/s cov of ft corpus crashes
} >>"$out"
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    log=$work/$t.log
    "build/meson-fuzz/fuzz/$t" -max_total_time="$secs" -timeout=10 -max_len=16384 \
        -dict="fuzz/$t.dict" -artifact_prefix="$work/$t-" -print_final_stats=1 \
        "$work/$t" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    total=$(sed -n 's/.*(\([0-9]*\) inline 8-bit counters).*/\1/p' "$log" | head -n 1)
    crashes=$(ls "$work/$t-"* 2>/dev/null | wc -l)
    [ $rc = 0 ] || crashes="$crashes (exit $rc)"
    printf '%-16s %8s %12s %9s %7s %7s %7s %8s %s\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${total:-?}" "${ft:-?}" "${corp:-?}" "$crashes" >>"$out"
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        rm -rf "$work/$t.min" && mkdir -p "$work/$t.min"
        "build/meson-fuzz/fuzz/$t" -merge=1 -max_len=16384 "$work/$t.min" "fuzz/corpus/$t" \
            "$work/$t" >/dev/null 2>&1
    fi
done
echo >>"$out"
cat "$out"
