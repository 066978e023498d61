#!/bin/bash
# timeout: 180
# dshmd as a systemd service (data/dshmd.service.in, hostd/notify.h):
#   - the unit meson generates and installs passes `systemd-analyze verify`
#     (in a root holding the installed files and systemd's own units), with
#     no warning, and says what it should (Type=notify, before libvirt, the
#     runtime directory, reload by SIGHUP, the hardening);
#   - the hardening leaves dshmd what it uses: every system call dshmd makes
#     while serving a client (attach, userfaultfd ioctls, memfds, locks) is in
#     the unit's SystemCallFilter, every socket family in
#     RestrictAddressFamilies, and no mapping is writable and executable
#     (MemoryDenyWriteExecute);
#   - with NOTIFY_SOCKET set, dshmd tells READY=1 once it listens; SIGHUP
#     gives RELOADING=1 then READY=1 with a STATUS saying what was applied and
#     what needs a restart (an invalid file changes nothing); SIGTERM gives
#     STOPPING=1 and exit 0;
#   - a SIGTERM right after dshmd's first listen() (an LD_PRELOAD shim) ends
#     it cleanly (exit 0, socket removed), not by the signal (exit 143).
# Runs dshmd in this namespace on 127.0.0.1 (no simulated hosts).
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/dshmd.sh"
command -v systemd-analyze >/dev/null || t_fail "systemd-analyze missing (package systemd)"
command -v strace >/dev/null || t_fail "strace missing"
unit=$MESON_BUILD/data/dshmd.service
[ -f "$unit" ] || t_fail "$unit missing: build with meson first"
work=$(mktemp -d /tmp/t-systemd-unit.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

t_step "the installed unit passes systemd-analyze verify"
root=$work/root
meson install -C "$MESON_BUILD" --destdir "$root" --no-rebuild >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; t_fail "meson install"; }
installed=$(find "$root" -name dshmd.service -path '*/systemd/system/*')
[ -n "$installed" ] || t_fail "no dshmd.service under $root"
cmp -s "$installed" "$unit" || t_fail "installed unit differs from $unit"
# verify resolves the unit's paths and its dependencies inside the root.
mkdir -p "$root/usr/lib/systemd" "$root/bin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp /bin/kill "$root/bin/kill"
rc=0
out=$(systemd-analyze verify --root="$root" "${installed#"$root"}" 2>&1) || rc=$?
t_assert_eq "$rc" 0 "exit status of systemd-analyze verify (output: $out)"
t_assert_eq "$out" "" "output of systemd-analyze verify"
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$unit")
[ -x "$root$exec_start" ] || t_fail "ExecStart=$exec_start is not installed"
for line in 'Type=notify' 'Before=libvirtd.service virtqemud.service' 'RuntimeDirectory=dshm' \
    'ExecReload=/bin/kill -HUP $MAINPID' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
    'ReadWritePaths=/run/dshm' 'ProtectHome=yes' 'PrivateTmp=yes' \
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK' 'LockPersonality=yes' \
    'MemoryDenyWriteExecute=yes' 'SystemCallFilter=@system-service'; do
    grep -qxF -- "$line" "$unit" || t_fail "the unit lacks '$line'"
done

# A one-host configuration on a free loopback port.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
conf=$work/dshmd.conf
sock=$work/dshmd.sock
write_conf() {  # write_conf FILE [DSHMD-KEYS [POLICY-KEYS]]
    printf '[dshmd]\nhost-id = 1\nlisten = 127.0.0.1:%s\nsocket = %s\n%b\n[segment s]\nsize = 64K\nowner = 1\n[policy]\n%b\n' \
        "$port" "$sock" "${2:-}" "${3:-}" >"$1"
}
write_conf "$conf"
# What SIGHUP reads: one policy threshold (applied) and one [dshmd] key
# (needs a restart) changed; then an invalid file.
write_conf "$work/reload.conf" 'poll-us = 10' 'strong-min-share = 0.5'
printf '[dshmd]\nhost-id = 1\npol-us = 3\n' >"$work/bad.conf"
"$DSHMD" --check-config --config "$conf" >/dev/null || t_fail "the test's configuration is invalid"

t_step "dshmd's system calls and socket families are allowed by the unit's hardening"
# The system calls of @system-service, groups expanded.
systemd-analyze --no-pager syscall-filter </dev/null 2>/dev/null | python3 -c '
import sys
groups, cur = {}, None
for line in sys.stdin.read().splitlines():
    if line.startswith("@"):
        cur = groups.setdefault(line.strip(), [])
    elif cur is not None and line.strip() and not line.strip().startswith("#"):
        cur.append(line.strip())
def expand(g, seen):
    for n in groups.get(g, []):
        if n.startswith("@"):
            if n not in seen:
                seen.add(n)
                yield from expand(n, seen)
        else:
            yield n
print("\n".join(sorted(set(expand("@system-service", set())))))' >"$work/allowed"
[ "$(wc -l <"$work/allowed")" -gt 100 ] || t_fail "could not list @system-service: $(head -3 "$work/allowed")"
grep -qx userfaultfd "$work/allowed" || t_fail "@system-service lacks userfaultfd"
grep -qx memfd_create "$work/allowed" || t_fail "@system-service lacks memfd_create"
strace -f -qq -o "$work/strace" "$DSHMD" --config "$conf" 2>"$work/dshmd.log" &
strace_pid=$!
t_wait_until 20 test -S "$sock" || { cat "$work/dshmd.log"; t_fail "dshmd did not listen"; }
# dshmd's own pid: the first one of the trace (its execve).
pid=$(awk '{print $1; exit}' "$work/strace")
"$DSHM_ATTACH" --socket "$sock" s count --offset 8 --iterations 20 --lock 1 >"$work/count.out" ||
    t_fail "dshm-attach count: $(cat "$work/count.out")"
"$DSHM_ATTACH" --socket "$sock" s fill --offset 4096 --length 16K --pattern 7 --lock 2 >/dev/null
"$DSHM_ATTACH" --socket "$sock" s verify --offset 4096 --length 16K --pattern 7 --lock 2 >/dev/null ||
    t_fail "verify through dshmd"
"$DSHMCTL" --socket "$sock" segments >/dev/null || t_fail "dshmctl segments"
kill -TERM "$pid"
pid=
rc=0; wait "$strace_pid" || rc=$?
t_assert_eq "$rc" 0 "exit status of dshmd under strace after SIGTERM"
# Lines "PID name(args) = ..."; the loader's calls before main are dshmd's too.
sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p' "$work/strace" | sort -u >"$work/used"
grep -qx ioctl "$work/used" || t_fail "dshmd made no ioctl (no userfaultfd served?)"
grep -qx memfd_create "$work/used" || t_fail "dshmd made no memfd"
denied=$(comm -23 "$work/used" "$work/allowed" | grep -vx -e exit_group -e execve || true)
t_assert_eq "$denied" "" "system calls of dshmd outside SystemCallFilter=@system-service"
families=$(sed -nE 's/^[0-9]+ +socket\((AF_[A-Z0-9]+),.*/\1/p' "$work/strace" | sort -u | tr '\n' ' ')
t_say "   socket families used: $families"
for f in $families; do
    case $f in AF_UNIX | AF_INET | AF_INET6 | AF_NETLINK) ;; *) t_fail "dshmd uses $f, outside RestrictAddressFamilies" ;; esac
done
wx=$(grep -E '^[0-9]+ +(mmap|mprotect)\(.*PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE' "$work/strace" || true)
t_assert_eq "$wx" "" "writable and executable mappings (MemoryDenyWriteExecute)"
t_say "   $(wc -l <"$work/used") distinct system calls, all allowed"

t_step "READY=1 once listening; SIGHUP: RELOADING=1 then READY=1; SIGTERM: STOPPING=1, exit 0"
python3 "$TOP/tests/lib/notify-check.py" "$work/notify.sock" \
    'expect:^READY=1 \| STATUS=serving 1 segment\(s\); clients on '"$sock" \
    "run:test -S $sock" \
    "run:cp $work/reload.conf $conf" \
    'signal:HUP' \
    'expect:^RELOADING=1 \| MONOTONIC_USEC=[0-9]+ \| STATUS=reloading ' \
    'expect:^READY=1 \| STATUS=reloaded .*: policy thresholds applied, 1 change\(s\) need a restart$' \
    "run:cp $work/bad.conf $conf" \
    'signal:HUP' \
    'expect:^RELOADING=1' \
    'expect:^READY=1 \| STATUS=reload failed, nothing changed: .*\[dshmd\] pol-us: unknown key; did you mean .poll-us.\?$' \
    "run:$DSHMCTL --socket $sock segments >/dev/null" \
    'signal:TERM' \
    'expect:^STOPPING=1' \
    'exit:0' \
    -- "$DSHMD" --config "$conf" >"$work/notify.out" 2>"$work/notify-dshmd.log" ||
    { cat "$work/notify.out" "$work/notify-dshmd.log"; t_fail "notifications"; }
cat "$work/notify.out"
t_assert_file_match "$work/notify-dshmd.log" "poll-us = 10 differs from the running configuration: it takes effect at the next restart" \
    "the log names what needs a restart"
[ ! -e "$sock" ] || t_fail "dshmd left its socket behind"

t_step "SIGTERM right after the first listen(): a clean shutdown, not exit 143"
write_conf "$conf"
shim=$MESON_BUILD/tests/sigterm-after-listen.so
[ -f "$shim" ] || t_fail "$shim missing"
rc=0
LD_PRELOAD=$shim timeout 20 "$DSHMD" --config "$conf" 2>"$work/sigterm.log" || rc=$?
t_assert_eq "$rc" 0 "exit status of dshmd killed by SIGTERM right after listen() ($(tail -3 "$work/sigterm.log"))"
t_assert_file_match "$work/sigterm.log" "shutting down" "dshmd's log"
[ ! -e "$sock" ] || t_fail "dshmd left its socket behind"
t_say "ok"
