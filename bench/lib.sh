# shellcheck shell=bash
# Set-up and helpers shared by the dshmd bench scripts.  Source it with
# TB_PREFIX and TB_NET exported (the script's own testbed instance, never the
# test suite's); it sources tests/lib/{common,testbed,dshmd}.sh.
#
# --pin-hosts (PIN_HOSTS=1): every process of a simulated host runs on that
# host's own CPUs, h1 on the first half of the machine's CPUs and every
# other host on the second half, as separate machines would.
PIN_HOSTS=${PIN_HOSTS:-0}

[ "$TB_PREFIX" != dshm ] || { echo "refusing TB_PREFIX=dshm: that is the test suite's testbed" >&2; exit 2; }
_BENCH_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MESON_BUILD=${MESON_BUILD:-$_BENCH_TOP/build/meson}
# shellcheck source=../tests/lib/common.sh
source "$_BENCH_TOP/tests/lib/common.sh"
# shellcheck source=../tests/lib/testbed.sh
source "$_BENCH_TOP/tests/lib/testbed.sh"
# shellcheck source=../tests/lib/dshmd.sh
source "$_BENCH_TOP/tests/lib/dshmd.sh"

# bench_check_pin: refuses --pin-hosts on a machine with one CPU.
bench_check_pin() {
    [ "$PIN_HOSTS" = 0 ] || [ "$(nproc)" -ge 2 ] || { echo "--pin-hosts needs at least 2 CPUs" >&2; exit 2; }
}

# bench_cpus HOST: the CPU list HOST runs on with --pin-hosts.
bench_cpus() {
    local n half
    n=$(nproc)
    half=$((n / 2))
    case $1 in
        h1) echo "0-$((half - 1))" ;;
        *) echo "$half-$((n - 1))" ;;
    esac
}

# bench_pin HOST: the command prefix that keeps a process on HOST's CPUs
# (nothing without --pin-hosts).  Use it unquoted: tb_run h1 $(bench_pin h1) cmd.
bench_pin() { [ "$PIN_HOSTS" = 0 ] || echo "taskset -c $(bench_cpus "$1")"; }

# bench_pin_dshmd HOST...: moves every thread of HOST's running dshmd onto
# HOST's CPUs (nothing without --pin-hosts).
bench_pin_dshmd() {
    [ "$PIN_HOSTS" = 1 ] || return 0
    local h
    for h in "$@"; do
        tb_run "$h" taskset -a -p -c "$(bench_cpus "$h")" "$(cat "$TB_STATE/$h/dshmd.pid")" >/dev/null
    done
}

# bench_cpus_line: says how the hosts share the CPUs (for result headers).
bench_cpus_line() {
    if [ "$PIN_HOSTS" = 1 ]; then
        echo "pinned: h1 on $(bench_cpus h1), h2 on $(bench_cpus h2)"
    else
        echo "not pinned: both hosts share all $(nproc)"
    fi
}

# bench_prepare NAME: the checks of every bench script (root, for the
# namespaces; CPUs for --pin-hosts) and its result file: OUT, unless set,
# becomes bench/results/NAME-YYYYMMDD-HHMMSS.txt.
bench_prepare() {
    [ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
    bench_check_pin
    mkdir -p "$_BENCH_TOP/bench/results"
    [ -n "${OUT:-}" ] || OUT=$_BENCH_TOP/bench/results/$1-$(date +%Y%m%d-%H%M%S).txt
}

# bench_machine_line: date, kernel, CPUs and commit, for result headers.
bench_machine_line() {
    echo "# date: $(date -Is)  kernel: $(uname -r)  nproc: $(nproc)  commit: $(git -C "$_BENCH_TOP" rev-parse --short HEAD 2>/dev/null || echo ?)"
}

# bench_tcp_server HOST [PREFIX...]: starts a one-session tcp_floor server
# on HOST's address (PREFIX: e.g. a taskset command), prints its port.
# TCP_FLOOR must be set.  bench_tcp_server_gone HOST waits (5 s at most)
# for it to have exited after its session.
bench_tcp_server() {
    local h=$1 port="" i
    shift
    tb_spawn "$h" tcp_server "$@" "$TCP_FLOOR" server --listen "$(tb_addr "$h"):0" --timeout 300
    for i in $(seq 1 100); do
        port=$(sed -n 's/^tcp_floor listening .* port=\([0-9]*\).*/\1/p' "$(tb_log "$h" tcp_server)")
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || t_fail "tcp_floor server did not listen: $(cat "$(tb_log "$h" tcp_server)")"
    echo "$port"
}
bench_tcp_server_gone() {
    local i
    for i in $(seq 1 50); do tb_alive "$1" tcp_server || break; sleep 0.1; done
}
