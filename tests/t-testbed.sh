#!/bin/bash
# timeout: 120
# The simulated-host testbed: hosts reach each other over the lab bridge and
# nothing else; teardown leaves nothing behind on every exit path (success,
# failed assertion, Ctrl-C, SIGTERM) and a crashed run is cleaned up by the next.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
t_need_built

leftovers() { (source "$TOP/tests/lib/testbed.sh"; tb_leftovers); }
assert_clean() {
    local l
    l=$(leftovers)
    [ -z "$l" ] || t_fail "$1: testbed left behind: $l"
}

# A child testbed script that ends in the way given by $1.
child() {
    bash -c '
        source "$1/tests/lib/common.sh"; source "$1/tests/lib/testbed.sh"
        tb_init 2
        tb_spawn h1 sleeper sleep 600
        tb_spawn h2 sleeper sleep 600
        case "$2" in
            ok) exit 0 ;;
            assert) t_assert_eq 1 2 "deliberately failing assertion" ;;
            int) kill -INT $$; sleep 5 ;;
            term) kill -TERM $$; sleep 5 ;;
            crash) kill -KILL $$ ;;
            sanitizer-report) echo "==1==ERROR: AddressSanitizer: heap-use-after-free" >"$TB_STATE/h1/sleeper.log"; exit 0 ;;
        esac
        echo "child: not reached"' child "$TOP" "$1" >/dev/null 2>&1
}

assert_clean "before the test"

t_step "teardown after success, failed assertion, SIGINT, SIGTERM"
for how in ok assert int term; do
    child "$how" && [ "$how" != ok ] && t_fail "child '$how' exited 0"
    assert_clean "after a child that ended with '$how'"
done

t_step "a crashed run (SIGKILL, no teardown) is cleaned up by the next tb_init"
child crash || true
[ -n "$(leftovers)" ] || t_fail "the SIGKILLed child left nothing: the crash case tests nothing"
child ok
assert_clean "after the run that followed a crash"

t_step "a sanitizer report in a host's log fails the test at teardown"
if child sanitizer-report; then t_fail "a run whose log held an ASan report passed"; fi
assert_clean "after a child with a sanitizer report"

t_step "3 hosts: addresses, hostnames, private /run and /dev/shm"
tb_init 3
t_assert_eq "$(tb_run h2 hostname)" h2 "hostname of h2"
t_assert_eq "$(tb_run h3 ip -4 -o addr show dev eth0 | awk '{print $4}')" "$TB_NET.3/24" "address of h3"
tb_run h1 touch /dev/shm/only-on-h1 /run/only-on-h1
tb_run h2 test ! -e /dev/shm/only-on-h1 || t_fail "/dev/shm is shared between h1 and h2"
tb_run h2 test ! -e /run/only-on-h1 || t_fail "/run is shared between h1 and h2"
test ! -e /dev/shm/only-on-h1 || t_fail "h1's /dev/shm leaks into the machine"
t_assert_match "$(tb_run h1 getent hosts h3)" "$TB_NET.3" "h1 resolves h3"

t_step "a spawned process holds only stdin, stdout and stderr"
exec {held}>"$TB_STATE/held-by-the-test"
tb_spawn h1 fdsleeper sleep 600
fds=$(tb_run h1 ls "/proc/$(cat "$TB_STATE/h1/fdsleeper.pid")/fd" | sort -n | tr '\n' ' ')
exec {held}>&-
t_assert_eq "$fds" "0 1 2 " "fds of a process tb_spawn started"

t_step "h1 connects to a listener on h2 over the lab bridge"
tb_spawn h2 listener busybox nc -l -p 7000 -e /bin/echo hello-from-h2
# The listener may take a moment to listen (a busy machine): retry a refused
# connection (it does not consume the listener's one connection).
got=""
for i in $(seq 1 50); do
    got=$(tb_run h1 timeout 5 bash -c 'cat </dev/tcp/"$1"/7000' - "$TB_NET.2" 2>/dev/null) && break
    sleep 0.1
done
t_assert_eq "$got" "hello-from-h2" "reply from h2's listener"

t_step "... and cannot reach anything else"
# No route leaves the lab: route lookups fail without sending a packet.
for dst in 192.0.2.1 8.8.8.8 10.0.0.1; do
    if tb_run h1 ip route get "$dst" >/dev/null 2>&1; then t_fail "h1 has a route to $dst"; fi
done
# The machine's own loopback is not h1's loopback.  The listener takes a
# free port: a fixed one may be taken by a testbed running beside this one.
portfile=$(mktemp)
python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"root-ns\n"); c.close()' >"$portfile" 2>/dev/null &
rootl=$!
t_wait_until 5 test -s "$portfile" || t_fail "no listener in the root namespace"
port=$(cat "$portfile")
if tb_run h1 timeout 3 bash -c 'cat </dev/tcp/127.0.0.1/"$1"' - "$port" 2>/dev/null | grep -q root-ns; then
    t_fail "h1 reached a listener of the root namespace"
fi
kill $rootl 2>/dev/null || true
rm -f "$portfile"
# The machine cannot reach the hosts either (they are not on its network).
if timeout 3 bash -c 'cat </dev/tcp/"$1"/7000' - "$TB_NET.2" 2>/dev/null; then t_fail "root namespace reached h2"; fi

t_step "teardown of this testbed"
tb_teardown
assert_clean "after tb_teardown"
t_say "ok"
