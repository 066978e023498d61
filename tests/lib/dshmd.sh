# shellcheck shell=bash
# Running dshmd on testbed hosts.  Source after common.sh and testbed.sh.
#
#   ds_cluster N "SEG:SIZE:OWNER ..." [extra [dshmd] lines]
#       writes a dshmd.conf for h1..hN (peers: all other hosts) and starts
#       dshmd on each; waits until every host sees every peer connected.
#       DSHM_CONF_hN in the environment: more [dshmd] lines for hN alone.
#       DSHM_MEMBERSHIP=corosync (default static): corosync runs on h1..hN
#       (tb_corosync_start, unless it runs there already) and each dshmd
#       has membership = corosync and no [peer] groups.
#       DSHMD_TRACE=1 / DSHMD_PHASES=1 in the environment: each dshmd writes
#       $TB_STATE/hN/trace.log (page events) / phases.log (release phases).
#       It sets no variable and prints nothing.  What it leaves, on each hN:
#       the spawned process "dshmd" (tb_log/tb_kill/tb_alive hN dshmd), its
#       config $TB_STATE/hN/dshmd.conf, its local socket $DSHM_SOCK (inside
#       hN), and its peer port at ds_peer_addr hN.
#       Every host's dshmd.conf names the testbed's key (ds_authkey) as
#       auth-key-file unless its lines set auth-key-file.
#   ds_authkey                           the testbed's key file (made once)
#   ds_peer_addr HOST                    ADDR:PORT of HOST's dshmd for peers
#   ds_attach HOST SEGMENT ARGS...       run dshm-attach on HOST
#   ds_ctl HOST ARGS...                  run dshmctl on HOST
#   ds_stat HOST SEGMENT KEY             one counter of a segment (dshmctl --json)
#   ds_wait_stat HOST SEGMENT KEY VALUE [SECS]  wait (5 s) until that counter is VALUE
#   ds_wait_peer HOST PEER yes|no        wait (5 s) until HOST sees PEER connected
#   ds_cluster_view HOST                 HOST's view of every host's VMs (owner)
#   ds_wait_view HOST VM REGEX           wait (20 s) until VM's line matches
#   ds_script / ds_ask / ds_ask_ok       scripted dshm-attach clients (below)
#   ds_script_spawn HOST NAME CMD...     any line-driven program, for ds_ask
#   ds_migrate SRC DST_HOST DST SEG VM   migrate a script client (below)

# DSHM_HOST_BUILD: the meson build whose dshmd and host tools run (default
# the plain build; tests/run.sh points the t-dshm-* tests at the ASan/UBSan
# build, and tb_teardown fails a test whose logs hold a sanitizer report).
# DSHMD, DSHM_ATTACH, DSHMCTL in the environment: those binaries instead
# (t-packages: the installed ones).
DSHM_HOST_BUILD=${DSHM_HOST_BUILD:-$MESON_BUILD}
DSHMD=${DSHMD:-$DSHM_HOST_BUILD/hostd/dshmd}
DSHM_ATTACH=${DSHM_ATTACH:-$DSHM_HOST_BUILD/hostd/client/dshm-attach}
DSHMCTL=${DSHMCTL:-$DSHM_HOST_BUILD/hostd/client/dshmctl}
DSHM_PORT=7450
DSHM_SOCK=/run/dshm/dshmd.sock
DSHM_MEMBERSHIP=${DSHM_MEMBERSHIP:-static}

# ds_authkey: the testbed's cluster key (peer authentication), made once
# per testbed with dshmctl keygen; prints its path.
ds_authkey() {
    [ -s "$TB_STATE/authkey" ] || "$DSHMCTL" keygen "$TB_STATE/authkey" >&2
    echo "$TB_STATE/authkey"
}

ds_cluster() {
    local n=$1 segs=$2 extra=${3:-} i j k spec own name size owner out ok key keyline need=()
    if [ "$DSHM_MEMBERSHIP" = corosync ]; then
        for i in $(seq 1 "$n"); do
            [ -n "${_TB_COROSYNC_UP[h$i]:-}" ] || need+=("h$i")
        done
        [ ${#need[@]} = 0 ] || tb_corosync_start "${need[@]}"
    fi
    key=$(ds_authkey)
    export DSHM_AUTHKEY=$key  # fakepeer.py's key (its default): the testbed's
    for i in $(seq 1 "$n"); do
        own=DSHM_CONF_h$i
        # Every host gets the testbed's key unless its lines name another
        # (with auth = off it is not read).
        keyline="auth-key-file = $key"
        case "${!own:-}$extra" in *auth-key-file*) keyline= ;; esac
        {
            printf '[dshmd]\nhost-id = %s\nname = h%s\nlisten = %s\nsocket = %s\nmembership = %s\n%s\n%b\n%b\n' \
                "$i" "$i" "$(ds_peer_addr "h$i")" "$DSHM_SOCK" "$DSHM_MEMBERSHIP" "$keyline" "${!own:-}" "$extra"
            for j in $(seq 1 "$n"); do
                [ "$j" = "$i" ] || [ "$DSHM_MEMBERSHIP" = corosync ] && continue
                printf '[peer h%s]\nhost-id = %s\naddress = %s\n' "$j" "$j" "$(ds_peer_addr "h$j")"
            done
            for spec in $segs; do
                IFS=: read -r name size owner <<<"$spec"
                printf '[segment %s]\nsize = %s\nowner = %s\n' "$name" "$size" "$owner"
            done
        } >"$TB_STATE/h$i/dshmd.conf"
        tb_spawn "h$i" dshmd env G_MESSAGES_DEBUG="${DSHMD_DEBUG:-}" DSHMD_TRACE="${DSHMD_TRACE:+$TB_STATE/h$i/trace.log}" DSHMD_PHASES="${DSHMD_PHASES:+$TB_STATE/h$i/phases.log}" "$DSHMD" --config "$TB_STATE/h$i/dshmd.conf"
    done
    for i in $(seq 1 "$n"); do
        ok=0
        for k in $(seq 1 100); do
            if out=$(tb_run "h$i" "$DSHMCTL" peers --json 2>/dev/null) &&
                [ "$(grep -o '"connected" *: *true' <<<"$out" | wc -l)" = $((n - 1)) ]; then
                ok=1
                break
            fi
            sleep 0.1
        done
        [ $ok = 1 ] || { cat "$(tb_log "h$i" dshmd)" >&2; t_fail "dshmd on h$i did not connect to all peers"; }
    done
}

ds_peer_addr() { echo "$(tb_addr "$1"):$DSHM_PORT"; }

ds_attach() {
    local h=$1
    shift
    tb_run "$h" "$DSHM_ATTACH" --name "${DSHM_CLIENT_NAME:-test-$h}" "$@"
}

ds_ctl() {
    local h=$1
    shift
    tb_run "$h" "$DSHMCTL" "$@"
}

# ds_stat HOST SEGMENT KEY: a counter from the segment's stats (or a
# top-level key of the segment such as valid_pages).
ds_stat() {
    tb_run "$1" "$DSHMCTL" segments --json | python3 -c '
import json, sys
seg, key = sys.argv[1], sys.argv[2]
for s in json.load(sys.stdin)["segments"]:
    if s["name"] == seg:
        print(s["stats"][key] if key in s["stats"] else s[key]); break
' "$2" "$3"
}

# ds_wait_stat HOST SEGMENT KEY VALUE [SECS]: waits (SECS, default 5) until
# ds_stat is VALUE; fails the test otherwise.
_ds_stat_is() { [ "$(ds_stat "$1" "$2" "$3")" = "$4" ]; }
ds_wait_stat() {
    t_wait_until "${5:-5}" _ds_stat_is "$1" "$2" "$3" "$4" || t_fail "$1's $3 of $2 is '$(ds_stat "$1" "$2" "$3")', expected '$4'"
}

# ds_cluster_view HOST: the owner's classification of every host's VMs as
# HOST sees it, one line per VM and segment: NAME LINK most-active|- EVENTS.
ds_cluster_view() {
    ds_ctl "$1" stats --json | python3 -c '
import json, sys
for s in json.load(sys.stdin)["segments"]:
    for v in s["cluster"]:
        print(v["name"], v["link"], "most-active" if v["most_active"] else "-", v["events"])'
}

_ds_view_is() { ds_cluster_view "$1" | grep -Eq "^$2 $3"; }
# ds_wait_view HOST VM REGEX: waits (20 s: reports come every report-ms)
# until HOST's line for VM matches REGEX after the name; fails otherwise.
ds_wait_view() {
    t_wait_until 20 _ds_view_is "$@" || t_fail "$1's view of $2 never matched '$3': $(ds_cluster_view "$1")"
}

_ds_peer_is() { ds_ctl "$1" peers | grep -Eq "^${2#h} +$2 .* $3 "; }
# ds_wait_peer HOST PEER yes|no: waits (5 s) until HOST's dshmd sees peer host
# PEER (hN) connected (yes) or down (no); fails the test otherwise.
ds_wait_peer() {
    local want=connected
    [ "$3" = yes ] || want=down
    t_wait_until 5 _ds_peer_is "$1" "$2" "$want" && return 0
    ds_ctl "$1" peers >&2
    t_fail "$1 does not see $2 $want"
}

# ds_script_spawn HOST NAME CMD...: starts a line-driven program on HOST with
# its stdin/stdout on fifos (stderr in NAME.err); it must answer "ok..." as
# its first line.  Then `ds_ask NAME "command"` sends one line and prints the
# answer (fails the test after 20 s without one).
declare -A _DS_IN _DS_OUT
ds_script_spawn() {
    local h=$1 name=$2 dir=$TB_STATE/$1
    shift 2
    mkfifo "$dir/$name.in" "$dir/$name.out"
    tb_run "$h" "$@" <"$dir/$name.in" >"$dir/$name.out" 2>"$dir/$name.err" &
    local in out
    exec {in}>"$dir/$name.in"
    exec {out}<"$dir/$name.out"
    _DS_IN[$name]=$in
    _DS_OUT[$name]=$out
    local first
    read -r -t 20 first <&"$out" || { cat "$dir/$name.err" >&2; t_fail "$name did not start"; }
    [[ $first == "ok"* ]] || t_fail "$name: $first"
}

# ds_script HOST NAME SEGMENT [VM]: ds_script_spawn of "dshm-attach ... script"
# (its first line: "ok attached").  The client calls itself VM (default
# NAME) towards dshmd: the access monitor's identity.
ds_script() {
    ds_script_spawn "$1" "$2" "$DSHM_ATTACH" --name "${4:-$2}" "$3" script
}

ds_ask() {
    local name=$1 line
    printf '%s\n' "$2" >&"${_DS_IN[$name]}"
    read -r -t "${3:-20}" line <&"${_DS_OUT[$name]}" || t_fail "$name: no answer to '$2'"
    printf '%s\n' "$line"
}

# ds_ask_ok NAME COMMAND: like ds_ask, fails the test unless the answer is ok/value.
ds_ask_ok() {
    local a
    a=$(ds_ask "$@")
    [[ $a == ok* || $a == value* ]] || t_fail "$1: '$2' answered '$a'"
    printf '%s\n' "$a"
}

# ds_ask_send NAME COMMAND / ds_ask_recv NAME TIMEOUT: the two halves of ds_ask, for
# requests that block (an acquire of a held lock).
ds_ask_send() { printf '%s\n' "$2" >&"${_DS_IN[$1]}"; }
ds_ask_recv() {
    local line
    read -r -t "$2" line <&"${_DS_OUT[$1]}" || return 1
    printf '%s\n' "$line"
}

# ds_migrate SRC DST_HOST DST SEGMENT VM: moves script client SRC as a
# live migration does: SRC's migrate-out (its hand-off token), a new script
# client DST on DST_HOST (calling itself VM) adopts the token, SRC quits.
ds_migrate() {
    local out token
    out=$(ds_ask_ok "$1" "migrate-out" 120)
    token=$(sed 's/.*token=\([0-9:]*\).*/\1/' <<<"$out")
    ds_script "$2" "$3" "$4" "$5"
    ds_ask_ok "$3" "adopt $token" >/dev/null
    ds_ask_ok "$1" "quit" >/dev/null
}
