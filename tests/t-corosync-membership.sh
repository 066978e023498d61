#!/bin/bash
# timeout: 300
# membership = corosync (hostd/membership.h, docs/protocol.md section 8):
# three hosts, each with its corosync (tests/lib/testbed.sh) and a dshmd in
# the CPG group "dshm"; h1 owns seg, h3 owns seg3.
#   - kill -9 of a non-owner's dshmd (h3): the others see it leave the group
#     within 1 s (measured from the kill to their log line); it comes back
#     with a new incarnation and is connected again.
#   - kill -9 of h3's corosync (h3 is lost to the cluster): the others see
#     h3 leave within corosync's token timeout plus consensus (the runtime
#     values, read from cmap); h3's dshmd says it lost corosync and refuses
#     locks (E_NO_QUORUM); a dshmd started while no corosync runs exits 3
#     with a message naming corosync.  Corosync back: h3 rejoins.
#   - h3 cut off (its veth down in the lab namespace, 1 of 3): h3 is not
#     quorate and refuses lock grants, as the owner of seg3 and for seg,
#     with E_NO_QUORUM; h1 and h2 lose h3 and go on (a client on h2 writes
#     seg under its lock, h1 reads it).  Healed: every host is quorate
#     again, sees every other connected, and all agree on one owner per
#     segment (seg: h1, seg3: h3); h3 grants its locks again.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
command -v corosync >/dev/null || t_fail "corosync is not installed (make deps)"
t_need_built
tb_init 3
t0=$(date +%s%N)
DSHM_MEMBERSHIP=corosync ds_cluster 3 "seg:64K:1 seg3:64K:3"
t_say "   corosync quorate and dshmd connected on 3 hosts after $((($(date +%s%N) - t0) / 1000000)) ms"
for h in h1 h2 h3; do
    t_assert_match "$(ds_ctl $h peers)" "^membership: corosync, quorate, members 1 2 3$" "$h's dshmctl"
done

# ms HH:MM:SS.mmm: milliseconds since midnight.
ms() {
    local h m s
    IFS=: read -r h m s <<<"$1"
    echo $(((10#$h * 3600 + 10#$m * 60) * 1000 + 10#${s%.*} * 1000 + 10#${s#*.}))
}
now_ms() { ms "$(date +%H:%M:%S.%3N)"; }
# since_ms LOG REGEX T0: ms from T0 (now_ms) to the first line of LOG
# matching REGEX (GLib stamps each line HH:MM:SS.mmm).
since_ms() {
    local line stamp d
    line=$(grep -E -- "$2" "$1" | head -n 1)
    stamp=$(grep -Eo '[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}' <<<"$line" | head -n 1)
    d=$(($(ms "$stamp") - $3))
    [ $d -lt 0 ] && d=$((d + 86400000))
    echo $d
}
# root_pid HOST NAME: a spawned process's pid in the root PID namespace, so
# that a test can kill it with no nsenter on the way (the kill is then as
# quick as on a real host, and a time taken just before it is when it
# happened).
root_pid() {
    local lp p
    lp=$(cat "$TB_STATE/$1/$2.pid")
    for p in $(ip netns pids "$TB_PREFIX-$1"); do
        if [ "$(awk '/^NSpid:/ {print $NF}' "/proc/$p/status" 2>/dev/null)" = "$lp" ]; then
            echo "$p"
            return 0
        fi
    done
    t_fail "no process $2 (pid $lp) on $1"
}
# lost_within HOST LOG REGEX T0 LIMIT_MS WHAT: waits (20 s) for the line, checks
# the time it took from T0 (just before the kill), prints it.
lost_within() {
    t_wait_for_file_match "$2" "$3" 20 || { tail -n 20 "$2" >&2; t_fail "$1 never logged: $3"; }
    local d
    d=$(since_ms "$2" "$3" "$4")
    t_say "   $1: $6 after $d ms"
    [ "$d" -le "$5" ] || t_fail "$1: $6 after $d ms, more than $5 ms"
}
respawn_dshmd() {  # respawn_dshmd HOST NAME
    tb_spawn "$1" "$2" "$DSHMD" --config "$TB_STATE/$1/dshmd.conf"
}

t_step "kill -9 of h3's dshmd (not an owner of seg): h1 and h2 see it leave the group within 1 s"
victim=$(root_pid h3 dshmd)
t_kill=$(now_ms)
kill -KILL "$victim"
for h in h1 h2; do
    lost_within $h "$(tb_log $h dshmd)" "membership: host 3 \\(h3\\) lost: its dshmd exited" "$t_kill" 1000 \
        "h3 lost (dshmd killed)"
done
ds_wait_peer h1 h3 no
t_assert_match "$(ds_ctl h1 peers)" "^membership: corosync, quorate, members 1 2$" "h1's members without h3"
respawn_dshmd h3 dshmd2
ds_wait_peer h1 h3 yes
ds_wait_peer h2 h3 yes
ds_wait_peer h3 h1 yes
t_assert_file_match "$(tb_log h1 dshmd)" "membership: host 3 \\(h3\\) is a member" "h1 saw h3 join again"

t_step "kill -9 of h3's corosync: h1 and h2 see h3 leave within the token timeout plus consensus"
token=$(tb_run h1 corosync-cmapctl -g runtime.config.totem.token | sed 's/.*= //')
consensus=$(tb_run h1 corosync-cmapctl -g runtime.config.totem.consensus | sed 's/.*= //')
t_say "   runtime token ${token} ms (token ${TB_COROSYNC_TOKEN} ms + coefficient per node beyond 2), consensus ${consensus} ms"
h1_lines=$(grep -c "membership: host 3 (h3) lost" "$(tb_log h1 dshmd)")
victim=$(root_pid h3 corosync)
t_kill=$(now_ms)
kill -KILL "$victim"
# The second "host 3 lost" line of h1 (the first was the dshmd kill).
lost_within h1 "$(tb_log h1 dshmd)" "membership: host 3 \\(h3\\) lost: its host left the cluster" "$t_kill" \
    $((token + consensus + 1000)) "h3 lost (corosync killed)"
lost_within h2 "$(tb_log h2 dshmd)" "membership: host 3 \\(h3\\) lost: its host left the cluster" "$t_kill" \
    $((token + consensus + 1000)) "h3 lost (corosync killed)"
[ "$(grep -c "membership: host 3 (h3) lost" "$(tb_log h1 dshmd)")" = $((h1_lines + 1)) ] || t_fail "h1 lost h3 more than once"
h3log=$(tb_log h3 dshmd2)
t_wait_for_file_match "$h3log" "membership: lost corosync" 5 || t_fail "h3's dshmd did not notice its corosync died"
t_assert_match "$(ds_ctl h3 peers)" "^membership: corosync, NOT CONNECTED to corosync, NOT QUORATE: locks refused, members 3$" \
    "h3's dshmctl without corosync"
out=$(ds_attach h3 seg3 write --offset 0 --value 1 --lock 0 2>&1) && t_fail "a locked write on h3 without corosync succeeded: $out"
t_assert_match "$out" "E_NO_QUORUM" "a lock on h3 without corosync"
t_say "   h3 refused: $out"
# A dshmd started while no corosync runs (its own socket and port).
sed -e "s|^listen = .*|listen = $(tb_addr h3):7451|" \
    -e 's|^socket = .*|socket = /run/dshm/second.sock|' "$TB_STATE/h3/dshmd.conf" >"$TB_STATE/h3/second.conf"
set +e
tb_run h3 "$DSHMD" --config "$TB_STATE/h3/second.conf" >"$TB_STATE/h3/second.log" 2>&1
rc=$?
set -e
t_assert_eq "$rc" 3 "exit status of a dshmd in corosync mode without corosync"
t_assert_file_match "$TB_STATE/h3/second.log" "corosync cannot be reached.*is corosync running" "its message"
tb_spawn h3 corosync2 corosync -f
for h in h1 h2 h3; do
    tb_corosync_wait_quorate $h 3 30 || t_fail "$h not quorate with 3 after h3's corosync restarted"
done
t_wait_for_file_match "$h3log" "membership: corosync reached again" 5 || t_fail "h3's dshmd did not reconnect to corosync"
ds_wait_peer h1 h3 yes
ds_wait_peer h3 h2 yes
_members_all() { ds_ctl "$1" peers | grep -q "^membership: corosync, quorate, members 1 2 3$"; }
t_wait_until 5 _members_all h3 || t_fail "h3's dshmctl with corosync back: $(ds_ctl h3 peers | sed -n 2p)"

t_step "h3 cut off (1 of 3): it refuses lock grants; h1 and h2 go on; healed, one owner per segment"
n1=$(grep -c "membership: host 3 (h3) lost" "$(tb_log h1 dshmd)")
t_cut=$(now_ms)
tb_link_down h3
_h1_lost_h3_again() { [ "$(grep -c 'membership: host 3 (h3) lost' "$(tb_log h1 dshmd)")" -gt "$n1" ]; }
_not_quorate() { ds_ctl "$1" peers | grep -q 'NOT QUORATE'; }
t_wait_until 20 _not_quorate h3 || t_fail "h3 did not lose quorum"
t_wait_until 20 _h1_lost_h3_again || t_fail "h1 did not lose h3"
t_say "   h1 lost h3 after $(( $(now_ms) - t_cut )) ms (at most; polled)"
for seg in seg3 seg; do
    out=$(ds_attach h3 $seg write --offset 0 --value 1 --lock 1 2>&1) && t_fail "a locked write of $seg on the cut-off h3 succeeded: $out"
    t_assert_match "$out" "E_NO_QUORUM" "a lock of $seg on the cut-off h3"
done
t_say "   h3: $(ds_ctl h3 peers | sed -n 2p)"
# The majority goes on: a write under seg's lock on h2, read on h1.
ds_script h2 w2 seg
ds_ask_ok w2 "acquire 0" >/dev/null
ds_ask_ok w2 "write 0 4242" >/dev/null
ds_ask_ok w2 "release 0" >/dev/null
t_assert_eq "$(ds_attach h1 seg read --offset 0)" "4242" "h1 reads h2's write during the partition"
tb_link_up h3
for h in h1 h2 h3; do
    tb_corosync_wait_quorate $h 3 60 || t_fail "$h not quorate with 3 after healing"
done
ds_wait_peer h1 h3 yes
ds_wait_peer h2 h3 yes
ds_wait_peer h3 h1 yes
ds_wait_peer h3 h2 yes
for h in h1 h2 h3; do
    t_assert_eq "$(ds_stat $h seg owner)" 1 "$h's owner of seg after healing"
    t_assert_eq "$(ds_stat $h seg3 owner)" 3 "$h's owner of seg3 after healing"
    t_wait_until 5 _members_all $h || t_fail "$h's dshmctl after healing: $(ds_ctl $h peers | sed -n 2p)"
done
ds_attach h3 seg3 write --offset 0 --value 7 --lock 1 >/dev/null || t_fail "h3 does not grant seg3's lock after healing"
t_assert_eq "$(ds_attach h1 seg3 read --offset 0)" "7" "h1 reads h3's write to seg3 after healing"
ds_ask_ok w2 "quit" >/dev/null
for h in h1 h2; do tb_alive $h dshmd || t_fail "dshmd on $h died"; done
tb_alive h3 dshmd2 || t_fail "dshmd on h3 died"
t_say "ok"
