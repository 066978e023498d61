# shellcheck shell=bash
# dshm testbed: N simulated hosts on one machine.
#
# Each host h1..hN is
#   - a network namespace "dshm-hI" whose eth0 (198.18.0.I/24, RFC 2544
#     benchmarking range) is a veth into the bridge br0 of the lab namespace
#     "dshm-lab"; there is no route anywhere else, so hosts reach each other
#     and nothing else;
#   - a PID namespace whose PID 1 is tb-reaper: killing it kills everything
#     that runs on the host;
#   - a mount namespace (private propagation) with its own /run, /dev/shm,
#     /etc/hosts, /etc/hostname, /etc/passwd and /etc/group (copies of the
#     machine's with the libvirt-qemu user and the kvm group added when
#     missing: libvirtd looks them up before it reads qemu.conf), libvirt
#     directories (/etc/libvirt, /var/lib/libvirt, /var/log/libvirt,
#     /var/cache/libvirt) and corosync's (/etc/corosync, /var/lib/corosync,
#     /var/log/corosync), backed by $TB_STATE/hI/;
#   - a UTS namespace with hostname hI.
# Nothing of the testbed lives in the root network namespace.
#
# Usage (from a bash test, after sourcing tests/lib/common.sh):
#   tb_init 3                  # hosts h1 h2 h3; installs the teardown traps
#   tb_run h2 CMD...           # run CMD on h2, wait for it
#   tb_spawn h2 NAME CMD...    # start CMD on h2 in the background; log in
#                              #   $TB_STATE/h2/NAME.log, pid (host-local) in NAME.pid
#   tb_kill h2 NAME [SIG]      # signal a spawned process
#   tb_alive h2 NAME           # is a spawned process still running?
#   tb_log h2 NAME             # $TB_STATE/h2/NAME.log
#   tb_pid_of h2 PATTERN       # host-local pid of the newest process matching PATTERN
#   tb_addr h2                 # $TB_NET.2 (198.18.0.2 by default)
#   tb_corosync_start h1 h2 h3 # corosync 3 on those hosts (below); waits until
#                              #   each is quorate and sees all of them
#   tb_corosync_wait_quorate H N [SECS]  # H's corosync quorate with N members
#   tb_link_down h2 / tb_link_up h2      # cut h2 off (its veth in the lab) / heal
#   tb_teardown                # also runs on EXIT, INT, TERM
#
# Teardown runs on every exit path (normal exit, failed assertion under set -e,
# Ctrl-C, SIGTERM); a testbed left behind by a killed run is cleaned up by the
# next tb_init before it starts.

# One testbed per prefix may run at a time; TB_PREFIX, TB_NET and TB_STATE
# let a second one (e.g. benchmarks) run beside the tests.
TB_PREFIX=${TB_PREFIX:-dshm}
TB_STATE=${TB_STATE:-/var/tmp/$TB_PREFIX-testbed}
TB_NET=${TB_NET:-198.18.0}
TB_HOSTS=()

_tb_log() { printf 'testbed: %s\n' "$*" >&2; }
_tb_die() { printf 'testbed: error: %s\n' "$*" >&2; exit 1; }

# Start time of a pid (field 22 of /proc/PID/stat), to tell a live owner from
# a recycled pid.
_tb_starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# Remove everything a previous testbed may have left: its namespaces
# (PREFIX-lab, PREFIX-hN), the processes in them, the state directory.  Refuses to run while
# another live testbed owns the state.
tb_cleanup_stale() {
    if [ -f "$TB_STATE/owner" ]; then
        local pid start
        read -r pid start <"$TB_STATE/owner"
        if [ "$pid" != "$$" ] && [ -n "$pid" ] && [ "$(_tb_starttime "$pid")" = "$start" ]; then
            _tb_die "another testbed is running (owner pid $pid); wait for it or kill it"
        fi
    fi
    local ns found=0 stale_pid1s
    stale_pid1s=$(cat "$TB_STATE"/*/pid1 2>/dev/null || true)
    for ns in $(_tb_netns); do
        found=1
        _tb_kill_netns "$ns"
    done
    # shellcheck disable=SC2086
    _tb_wait_gone $stale_pid1s
    [ $found = 1 ] && _tb_log "cleaned up leftovers of an earlier run"
    rm -rf "$TB_STATE"
}

# _tb_own_ns NAME: is NAME a network namespace of this testbed (PREFIX-lab or
# PREFIX-hN)?  Exact names: a testbed whose prefix merely starts with ours
# (dshm and dshm-x) is another testbed, and may be running.
_tb_own_ns() {
    [ "$1" = "$TB_PREFIX-lab" ] || { [[ $1 == "$TB_PREFIX-h"* ]] && [[ ${1#"$TB_PREFIX-h"} =~ ^[0-9]+$ ]]; }
}

# _tb_netns: the network namespaces of this testbed that exist.
_tb_netns() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        if _tb_own_ns "$ns"; then echo "$ns"; fi
    done
}

# _tb_wait_gone PID...: wait (up to 10 s) until the killed hosts' PID 1s are
# gone.  A dying PID 1 waits for every zombie of its namespace to be reaped,
# including those whose parent lives outside, which this machine's init
# reaps only every few seconds.
_tb_wait_gone() {
    local p i
    for p in "$@"; do
        kill -KILL "$p" 2>/dev/null || true
        for i in $(seq 1 100); do
            [ -d "/proc/$p" ] || break
            sleep 0.1
        done
    done
}

_tb_kill_netns() {
    local ns=$1 pids i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] && break
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    ip netns del "$ns" 2>/dev/null || true
}

tb_init() {
    local n=$1 i
    command -v ip >/dev/null || _tb_die "iproute2 missing (make deps)"
    [ "$(id -u)" = 0 ] || _tb_die "the testbed needs root (namespaces, veth)"
    [ -x "$TB_REAPER" ] || _tb_die "tb-reaper not built ($TB_REAPER): run 'make tools'"
    tb_cleanup_stale
    mkdir -p "$TB_STATE"
    echo "$$ $(_tb_starttime $$)" >"$TB_STATE/owner"
    trap 'tb_teardown' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    ip netns add "$TB_PREFIX-lab"
    ip -n "$TB_PREFIX-lab" link set lo up
    ip -n "$TB_PREFIX-lab" link add br0 type bridge
    ip -n "$TB_PREFIX-lab" link set br0 up
    for i in $(seq 1 "$n"); do TB_HOSTS+=("h$i"); done
    # /etc/hosts for every host names all hosts.
    {
        echo "127.0.0.1 localhost"
        for i in $(seq 1 "$n"); do echo "$TB_NET.$i h$i"; done
    } >"$TB_STATE/hosts"
    for i in $(seq 1 "$n"); do _tb_add_host "h$i" "$i"; done
}

_tb_add_host() {
    local h=$1 idx=$2 ns=$TB_PREFIX-$1 dir=$TB_STATE/$1
    ip netns add "$ns"
    ip -n "$TB_PREFIX-lab" link add "v-$h" type veth peer name eth0 netns "$ns"
    ip -n "$TB_PREFIX-lab" link set "v-$h" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$TB_NET.$idx/24" dev eth0
    ip -n "$ns" link set eth0 up

    mkdir -p "$dir"/{etc-libvirt,var-lib-libvirt,var-log-libvirt,var-cache-libvirt}
    mkdir -p "$dir"/{etc-corosync,var-lib-corosync,var-log-corosync}
    [ -d /etc/libvirt ] && cp -a /etc/libvirt/. "$dir/etc-libvirt/"
    cp "$TB_STATE/hosts" "$dir/hosts"
    echo "$h" >"$dir/hostname"
    _tb_users "$dir"

    # The host's init: set up the private mounts, then become tb-reaper.
    ip netns exec "$ns" unshare --mount --uts --pid --fork --mount-proc --propagation private \
        /bin/bash -c '
            set -e
            d=$1
            hostname "$2"
            mount -t tmpfs -o mode=0755 tmpfs /run
            mount -t tmpfs -o mode=1777 tmpfs /dev/shm
            mount --bind "$d/hosts" /etc/hosts
            mount --bind "$d/hostname" /etc/hostname
            mount --bind "$d/passwd" /etc/passwd
            mount --bind "$d/group" /etc/group
            for m in etc/libvirt var/lib/libvirt var/log/libvirt var/cache/libvirt \
                etc/corosync var/lib/corosync var/log/corosync; do
                mkdir -p "/$m" 2>/dev/null || true
                [ -d "/$m" ] && mount --bind "$d/${m//\//-}" "/$m"
            done
            touch "$d/ready"
            exec "$3" "$4"' tb-host "$dir" "$h" "$TB_REAPER" "$TB_PREFIX" \
        </dev/null >"$dir/init.log" 2>&1 &
    local launcher=$! pid1="" i
    for i in $(seq 1 100); do
        [ -f "$dir/ready" ] && pid1=$(pgrep -P "$launcher" | head -n 1) && [ -n "$pid1" ] && break
        kill -0 "$launcher" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$pid1" ] || { cat "$dir/init.log" >&2; _tb_die "host $h did not start"; }
    echo "$pid1" >"$dir/pid1"
    # Teardown kills the launcher with the host: no "Killed" job report.
    disown "$launcher" 2>/dev/null || true
}

# _tb_free_id FILE: a numeric id >= 900 that the passwd/group FILE does not use.
_tb_free_id() {
    local id=900
    while cut -d: -f3 "$1" | grep -qx "$id"; do id=$((id + 1)); done
    echo "$id"
}

# _tb_users DIR: DIR/passwd and DIR/group, the machine's plus what a
# libvirtd of Debian's build needs (user libvirt-qemu, groups libvirt-qemu
# and kvm) when the machine lacks them (libvirt-daemon-system not installed).
_tb_users() {
    local d=$1 gid
    cp /etc/passwd "$d/passwd"
    cp /etc/group "$d/group"
    if ! grep -q '^kvm:' "$d/group"; then
        echo "kvm:x:$(_tb_free_id "$d/group"):" >>"$d/group"
    fi
    if ! grep -q '^libvirt-qemu:' "$d/group"; then
        echo "libvirt-qemu:x:$(_tb_free_id "$d/group"):" >>"$d/group"
    fi
    if ! grep -q '^libvirt-qemu:' "$d/passwd"; then
        gid=$(grep '^libvirt-qemu:' "$d/group" | cut -d: -f3)
        echo "libvirt-qemu:x:$(_tb_free_id "$d/passwd"):$gid:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin" >>"$d/passwd"
    fi
}

tb_addr() { echo "$TB_NET.${1#h}"; }
_tb_pid1() { cat "$TB_STATE/$1/pid1" 2>/dev/null || _tb_die "no host $1"; }

# tb_run HOST CMD...: run CMD inside HOST (all its namespaces), in the current
# directory, and return its exit status.
tb_run() {
    local h=$1
    shift
    nsenter -t "$(_tb_pid1 "$h")" -m -u -n -p --wd="$PWD" -- "$@"
}

# tb_spawn HOST NAME CMD...: start CMD in the background inside HOST.
# Output goes to $TB_STATE/HOST/NAME.log, the host-local pid to NAME.pid.
tb_spawn() {
    local h=$1 name=$2
    shift 2
    local dir=$TB_STATE/$h
    rm -f "$dir/$name.pid"
    # The child closes every fd above 2 first: a daemon must not hold the
    # test's files (a lock of the harness, a pipe to a test helper) open.
    tb_run "$h" /bin/bash -c 'echo $$ >"$1"; shift
        for f in /proc/self/fd/*; do f=${f##*/}; [ "$f" -gt 2 ] && eval "exec $f>&-"; done
        exec "$@"' tb-spawn "$dir/$name.pid" "$@" \
        </dev/null >"$dir/$name.log" 2>&1 &
    local i
    for i in $(seq 1 100); do
        [ -s "$dir/$name.pid" ] && return 0
        sleep 0.02
    done
    _tb_die "could not spawn $name on $h"
}

tb_log() { echo "$TB_STATE/$1/$2.log"; }

# tb_pid_of HOST PATTERN: host-local pid of the newest process matching PATTERN.
tb_pid_of() { tb_run "$1" pgrep -n -f "$2"; }

# tb_kill HOST NAME [SIGNAL]
tb_kill() {
    local pid
    pid=$(cat "$TB_STATE/$1/$2.pid" 2>/dev/null) || return 1
    tb_run "$1" kill "-${3:-TERM}" "$pid" 2>/dev/null
}

# tb_alive HOST NAME: is the spawned process still running?
tb_alive() {
    local pid
    pid=$(cat "$TB_STATE/$1/$2.pid" 2>/dev/null) || return 1
    tb_run "$1" kill -0 "$pid" 2>/dev/null
}

tb_teardown() {
    local rc=$?
    trap - EXIT INT TERM
    local h pid1
    # A sanitizer report in any log of any host fails the test (the daemons
    # of the t-dshm-* tests run an ASan/UBSan build, tests/run.sh).
    if [ -n "${TB_HOSTS[*]:-}" ] && _tb_sanitizer_reports; then
        [ "$rc" = 0 ] && rc=1
    fi
    # Keep the hosts' logs of a failed run (tests/run.sh sets TB_ARTIFACTS),
    # or of every run with TB_KEEP_LOGS=1.
    if { [ "$rc" != 0 ] || [ -n "${TB_KEEP_LOGS:-}" ]; } && [ -n "${TB_ARTIFACTS:-}" ]; then
        for h in "${TB_HOSTS[@]}"; do
            mkdir -p "$TB_ARTIFACTS/$h"
            cp "$TB_STATE/$h/"*.log "$TB_STATE/$h/"*.err "$TB_ARTIFACTS/$h/" 2>/dev/null || true
            # libvirtd's and its QEMUs' logs and consoles (tests/lib/libvirt.sh)
            cp -r "$TB_STATE/$h/var-log-libvirt" "$TB_ARTIFACTS/$h/" 2>/dev/null || true
        done
    fi
    for h in "${TB_HOSTS[@]}"; do
        pid1=$(cat "$TB_STATE/$h/pid1" 2>/dev/null || true)
        [ -n "$pid1" ] && kill -KILL "$pid1" 2>/dev/null
    done
    for h in "${TB_HOSTS[@]}"; do _tb_kill_netns "$TB_PREFIX-$h"; done
    _tb_kill_netns "$TB_PREFIX-lab"
    # shellcheck disable=SC2046
    _tb_wait_gone $(cat "$TB_STATE"/*/pid1 2>/dev/null)
    rm -rf "$TB_STATE"
    TB_HOSTS=()
    return $rc
}

# _tb_sanitizer_reports: prints the sanitizer reports in the hosts' logs
# (ASan, LSan, UBSan, TSan) and returns 0 if there were any.
_tb_sanitizer_reports() {
    local f found=1
    for f in "$TB_STATE"/h*/*.log; do
        [ -f "$f" ] || continue
        if grep -Eq '(ERROR|WARNING): (Address|Leak|Thread)Sanitizer|runtime error: ' "$f"; then
            echo "FAIL: sanitizer report in $f:" >&2
            grep -E -A25 '(ERROR|WARNING): (Address|Leak|Thread)Sanitizer|runtime error: ' "$f" | head -n 40 >&2
            found=0
        fi
    done
    return $found
}

# ---------------------------------------------------------------- corosync
#
# Corosync 3 on testbed hosts, as on a real cluster (issue 19): knet,
# aes256/sha256 with one authkey per testbed ($TB_STATE/authkey, made by
# tb_corosync_start), votequorum, token TB_COROSYNC_TOKEN ms (default
# 1000).  The nodelist is every host of the testbed (h1..hN, node id I,
# ring0 $TB_NET.I), so a host started later joins the same cluster and
# quorum is a majority of all N (two_node with N = 2).  Each host's
# corosync.conf is in $TB_STATE/hI/etc-corosync (its /etc/corosync), its
# log in var-log-corosync/corosync.log; the process is the spawned
# "corosync" (tb_kill hI corosync KILL: the host is lost).  It dies with
# its host at teardown.
TB_COROSYNC_TOKEN=${TB_COROSYNC_TOKEN:-1000}

_tb_corosync_conf() {
    local n=${#TB_HOSTS[@]} i
    printf 'totem {\n  version: 2\n  cluster_name: %s\n  transport: knet\n' "$TB_PREFIX"
    printf '  crypto_cipher: aes256\n  crypto_hash: sha256\n  token: %s\n}\n' "$TB_COROSYNC_TOKEN"
    printf 'nodelist {\n'
    for i in $(seq 1 "$n"); do
        printf '  node {\n    ring0_addr: %s\n    name: h%s\n    nodeid: %s\n  }\n' "$TB_NET.$i" "$i" "$i"
    done
    printf '}\nquorum {\n  provider: corosync_votequorum\n'
    [ "$n" = 2 ] && printf '  two_node: 1\n'
    printf '}\nlogging {\n  to_logfile: yes\n  logfile: /var/log/corosync/corosync.log\n'
    printf '  to_stderr: no\n  to_syslog: no\n  timestamp: hires\n}\n'
}

# tb_corosync_start HOST...: writes each HOST's /etc/corosync (corosync.conf,
# authkey), starts corosync there and waits (30 s) until each is quorate
# and sees every host started so far.
declare -A _TB_COROSYNC_UP=()  # hosts started (a restart counts once)
tb_corosync_start() {
    local h
    command -v corosync >/dev/null || _tb_die "corosync missing (make deps)"
    if [ ! -f "$TB_STATE/authkey" ]; then
        corosync-keygen -k "$TB_STATE/authkey" >/dev/null 2>&1 || _tb_die "corosync-keygen failed"
    fi
    for h in "$@"; do
        _tb_corosync_conf >"$TB_STATE/$h/etc-corosync/corosync.conf"
        install -m 0400 "$TB_STATE/authkey" "$TB_STATE/$h/etc-corosync/authkey"
        tb_spawn "$h" corosync corosync -f
        _TB_COROSYNC_UP[$h]=1
    done
    for h in "$@"; do
        tb_corosync_wait_quorate "$h" "${#_TB_COROSYNC_UP[@]}" 30 ||
            _tb_die "corosync on $h: not quorate with ${#_TB_COROSYNC_UP[@]} members within 30 s: $(tb_run "$h" corosync-quorumtool -s 2>&1 | tr '\n' ' ')"
    done
}

# _tb_quorate HOST N: HOST's corosync is quorate and has N members.
_tb_quorate() {
    local out
    out=$(tb_run "$1" corosync-quorumtool -s 2>/dev/null) || true
    grep -Eq '^Quorate: +Yes' <<<"$out" && grep -Eq "^Nodes: +$2\$" <<<"$out"
}
# tb_corosync_wait_quorate HOST N [SECS]: polls until HOST is quorate with
# N members (SECS, default 30); 1 if it is not by then.
tb_corosync_wait_quorate() {
    local deadline=$(($(date +%s) + ${3:-30}))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        _tb_quorate "$1" "$2" && return 0
        sleep 0.1
    done
    return 1
}

# tb_link_down HOST / tb_link_up HOST: HOST's veth in the lab namespace
# down (HOST is cut off from every other host) / up again.
tb_link_down() { ip -n "$TB_PREFIX-lab" link set "v-$1" down; }
tb_link_up() { ip -n "$TB_PREFIX-lab" link set "v-$1" up; }

# tb_leftovers: prints what a testbed left behind (nothing when clean).
tb_leftovers() {
    local m
    _tb_netns | sed 's/^/netns /'
    for m in $(awk '$2 ~ "^/run/netns/" {print $2}' /proc/mounts); do
        if _tb_own_ns "${m#/run/netns/}"; then echo "mount $m"; fi
    done
    ip -o link show 2>/dev/null | grep -E ': (v-h[0-9]+|br0)[@:]' | sed 's/^/link /' || true
    # live processes only: a killed host's PID 1 may stay a zombie until the
    # machine's init reaps it, which is no leftover
    ps -eo pid=,stat=,args= | awk -v p="$TB_PREFIX" '$2 !~ /^Z/ && $3 ~ /tb-reaper$/ && $4 == p {print "process " $0}' || true
    [ -e "$TB_STATE" ] && echo "state $TB_STATE" || true
}
