#!/bin/bash
# dshm test runner: `make check` calls this after building everything.
#
#   tests/run.sh                 all tests
#   tests/run.sh t-testbed ...   only the named integration tests (no unit tests)
#
# 1. Unit tests (Check), in the normal build, in an ASan/UBSan build and in
#    a clang build (build/meson-clang: meson.build adds -Wthread-safety for
#    clang, and -Werror makes building it the check of the loop mutex's
#    annotations, hostd/thread_annotations.h); ThreadSanitizer over the
#    unit tests where the I/O thread and the loop share state (run_tsan).
#    The libFuzzer targets of fuzz/ (run_fuzz): each runs its whole seed
#    corpus as regression inputs, then fuzzes for FUZZ_SECONDS (30).
# 2. Integration tests tests/t-*.sh, each in its own process with a time
#    limit; their output goes to build/test-logs/NAME.log and is shown when
#    they fail.  The t-dshm-* tests run the ASan/UBSan dshmd and host tools
#    (build/meson-asan) when that build exists; a sanitizer report in any
#    host's log fails the test (tb_teardown).
# Ends with one line "dshm tests: N passed, M failed"; exit status 0 only if
# nothing failed.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
LOGS=$TOP/build/test-logs
mkdir -p "$LOGS"
passed=0 failed=0 failures=()

result() {  # result NAME STATUS SECONDS
    if [ "$2" = 0 ]; then
        passed=$((passed + 1)); printf 'PASS %-34s %4ss\n' "$1" "$3"
    else
        failed=$((failed + 1)); failures+=("$1"); printf 'FAIL %-34s %4ss\n' "$1" "$3"
    fi
}

run_unit() {  # run_unit BUILDDIR LABEL [meson setup args...]
    local dir=$1 label=$2 start rc
    shift 2
    start=$(date +%s)
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$LOGS/setup-$label.log" 2>&1 || { cat "$LOGS/setup-$label.log"; result "unit ($label)" 1 0; return; }
    fi
    ninja -C "$dir" >"$LOGS/build-$label.log" 2>&1 || { tail -n 40 "$LOGS/build-$label.log"; result "unit ($label)" 1 0; return; }
    echo "== unit tests ($label): Check output"
    # Check's per-test timeout (4 s unless a test case sets its own) and
    # meson's are scaled: under sanitizers, or beside other work on the
    # machine, a test takes several times as long (UNIT_TIMEOUT_FACTOR).
    CK_TIMEOUT_MULTIPLIER=${UNIT_TIMEOUT_FACTOR:-1} meson test -C "$dir" --suite unit -v \
        --num-processes 2 --timeout-multiplier "${UNIT_TIMEOUT_FACTOR:-1}" 2>&1 | grep -E '^(Running suite|[0-9]+%: Checks|.*:[EF]:|Ok:|Fail:)' 
    rc=${PIPESTATUS[0]}
    result "unit ($label)" "$rc" $(($(date +%s) - start))
}

# ThreadSanitizer over the tests where two threads share state under the
# loop mutex: watch (the I/O thread), conn, and daemon_test (three hosts'
# roles, once with the I/O thread).  A report fails the run.
run_tsan() {
    local dir=build/meson-tsan start rc=0 t
    start=$(date +%s)
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" -Db_sanitize=thread -Db_lundef=false -Dguest_static=false \
            >"$LOGS/setup-tsan.log" 2>&1 || { cat "$LOGS/setup-tsan.log"; result "unit (tsan)" 1 0; return; }
    fi
    ninja -C "$dir" hostd/watch_test hostd/conn_test hostd/daemon_test >"$LOGS/build-tsan.log" 2>&1 ||
        { tail -n 40 "$LOGS/build-tsan.log"; result "unit (tsan)" 1 0; return; }
    echo "== unit tests (tsan): watch, conn, daemon"
    for t in watch_test conn_test daemon_test; do
        CK_TIMEOUT_MULTIPLIER=10 TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
            "$dir/hostd/$t" >"$LOGS/tsan-$t.log" 2>&1 || rc=1
        grep -E '^[0-9]+%: Checks' "$LOGS/tsan-$t.log"
        if grep -q 'ThreadSanitizer' "$LOGS/tsan-$t.log"; then
            grep -A20 'WARNING: ThreadSanitizer' "$LOGS/tsan-$t.log" | head -40
            rc=1
        fi
    done
    result "unit (tsan)" "$rc" $(($(date +%s) - start))
}

# The libFuzzer targets (fuzz/README.md), built by fuzz/build.sh into
# build/meson-fuzz: each runs every input of fuzz/corpus/TARGET once (the
# regression inputs, crashes found before included), then fuzzes for
# FUZZ_SECONDS (default 30) from there, new inputs going to a scratch
# directory.  A crash, leak, UBSan report, timeout (10 s per input) or
# out-of-memory fails "fuzz (TARGET)"; the reproducer is left in
# build/test-logs/fuzz-TARGET-crash-* (run the target on it to replay it).
FUZZ_TARGETS=(fuzz_peer fuzz_client fuzz_frame fuzz_diff fuzz_config fuzz_domain_xml)
run_fuzz() {
    local dir=build/meson-fuzz start rc t work secs=${FUZZ_SECONDS:-30}
    start=$(date +%s)
    bash fuzz/build.sh "$dir" >"$LOGS/build-fuzz.log" 2>&1 ||
        { tail -n 40 "$LOGS/build-fuzz.log"; result "fuzz (build)" 1 $(($(date +%s) - start)); return; }
    echo "== fuzz targets: corpus, then ${secs}s each"
    for t in "${FUZZ_TARGETS[@]}"; do
        start=$(date +%s) rc=0
        work=$(mktemp -d)
        rm -f "$LOGS/fuzz-$t-"*
        "$dir/fuzz/$t" -runs=0 -timeout=10 -artifact_prefix="$LOGS/fuzz-$t-" \
            "fuzz/corpus/$t" >"$LOGS/fuzz-$t.log" 2>&1 || rc=1
        if [ $rc = 0 ]; then
            "$dir/fuzz/$t" -max_total_time="$secs" -timeout=10 -max_len=16384 \
                -dict="fuzz/$t.dict" -artifact_prefix="$LOGS/fuzz-$t-" -print_final_stats=1 \
                "$work" "fuzz/corpus/$t" >>"$LOGS/fuzz-$t.log" 2>&1 || rc=1
        fi
        rm -rf "$work"
        grep -E '^stat::number_of_executed_units|^#[0-9]+ *DONE' "$LOGS/fuzz-$t.log" | tail -n 2
        if [ $rc != 0 ]; then
            grep -E -A12 '^==[0-9]+==ERROR|runtime error|check failed|GLib critical' \
                "$LOGS/fuzz-$t.log" | head -n 30
            ls "$LOGS/fuzz-$t-"* 2>/dev/null
        fi
        result "fuzz ($t)" "$rc" $(($(date +%s) - start))
    done
}

selected=("$@")
if [ ${#selected[@]} = 0 ]; then
    UNIT_TIMEOUT_FACTOR=3 run_unit build/meson plain
    UNIT_TIMEOUT_FACTOR=10 run_unit build/meson-asan asan-ubsan -Db_sanitize=address,undefined -Db_lundef=false -Dguest_static=false
    UNIT_TIMEOUT_FACTOR=3 CC=clang CXX=clang++ run_unit build/meson-clang clang
    run_tsan
    run_fuzz
    mapfile -t selected < <(cd tests && ls t-*.sh | sed 's/\.sh$//')
fi

# Probe the accelerator once for all tests (DSHM_ACCEL overrides).
source tests/lib/common.sh
set +e
if [ -z "${DSHM_ACCEL:-}" ]; then
    DSHM_ACCEL=$(t_accel) || exit 1
fi
export DSHM_ACCEL
echo "== integration tests (accelerator: $DSHM_ACCEL)"

for t in "${selected[@]}"; do
    t=${t%.sh}
    [ -f "tests/$t.sh" ] || { echo "no such test: $t"; result "$t" 1 0; continue; }
    limit=$(sed -n 's/^# timeout: \([0-9]*\).*/\1/p' "tests/$t.sh"); limit=${limit:-300}
    start=$(date +%s)
    rm -rf "${LOGS:?}/$t.hosts"
    # The t-dshm-* tests drive every protocol path (faults, releases, moves,
    # lost hosts, bad input) with host-level clients: their dshmd and host
    # tools are the ASan/UBSan build when it exists (the full run builds it
    # above), and a sanitizer report in a log fails the test.  The VM and
    # libvirt tests keep the plain build: under TCG their guests, not dshmd,
    # set the pace, and CI's time limit is theirs.
    host_build=
    if [[ $t == t-dshm-* ]] && [ -z "${DSHM_HOST_BUILD:-}" ] && [ -x build/meson-asan/hostd/dshmd ]; then
        host_build=$TOP/build/meson-asan
    fi
    DSHM_HOST_BUILD=${DSHM_HOST_BUILD:-$host_build} \
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    TB_ARTIFACTS=$LOGS/$t.hosts timeout --kill-after=10 "$limit" bash "tests/$t.sh" >"$LOGS/$t.log" 2>&1 </dev/null
    rc=$?
    [ $rc = 124 ] && echo "(timed out after ${limit}s)" >>"$LOGS/$t.log"
    result "$t" $rc $(($(date +%s) - start))
    if [ $rc != 0 ]; then
        sed 's/^/    | /' "$LOGS/$t.log" | tail -n 40
    fi
done

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]} (logs in build/test-logs/)"
echo "dshm tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
