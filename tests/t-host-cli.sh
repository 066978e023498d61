#!/bin/bash
# timeout: 120
# The tools' command-line conventions (dshm(7), "Exit statuses";
# include/dshm/exit_codes.h), their man pages and completion, and the install
# layout:
#   - dshmd, dshmctl and dshm-attach print "NAME VERSION" (meson's project
#     version) for --version, their help on stdout for --help (exit 0), and
#     refuse an unknown option with a message and exit 2; a missing argument
#     is 2, an unreachable dshmd 3;
#   - dshmd --check-config prints the whole effective configuration (every
#     key, the defaults commented out and marked) and exits 0; an invalid
#     file exits 2 with the message, an unreadable one 3; the example
#     configuration that is installed is valid;
#   - the guest tools dshm-tool and dshm-lock print their version, refuse an
#     unknown command or option with 2 before looking for a device, and exit
#     3 when there is no device;
#   - every man page renders without a warning from man(1), names every
#     long option its tool's --help lists, and dshmd.conf(5) every key
#     --check-config prints;
#   - bash completion completes dshmctl's commands, domain-xml's options and
#     the segment names of the running dshmd;
#   - `make install DESTDIR=...` (meson install) puts dshmd in sbin, dshmctl and dshm-attach in bin, the
#     guest tools under libexec/dshm/guest (not in bin), the example
#     configuration under sysconfdir/dshm and the unit in the systemd unit
#     directory, the man pages in share/man/manN and the completion where
#     bash-completion looks.
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/dshmd.sh"
work=$(mktemp -d /tmp/t-host-cli.XXXXXX)
cpid=
# A dshmd the completion step starts is killed on every exit path.
trap '[ -z "$cpid" ] || kill "$cpid" 2>/dev/null; rm -rf "$work"' EXIT
version=$(meson introspect --projectinfo "$MESON_BUILD" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')

# run_rc OUT ERR CMD...: runs CMD, stdout to OUT, stderr to ERR; echoes its status.
run_rc() {
    local out=$1 err=$2 rc=0
    shift 2
    "$@" >"$out" 2>"$err" || rc=$?
    echo "$rc"
}

t_step "--version, --help and unknown options of dshmd, dshmctl, dshm-attach"
for tool in "$DSHMD" "$DSHMCTL" "$DSHM_ATTACH"; do
    name=${tool##*/}
    t_assert_eq "$(run_rc "$work/out" "$work/err" "$tool" --version)" 0 "$name --version: exit status"
    t_assert_eq "$(cat "$work/out")" "$name $version" "$name --version"
    t_assert_eq "$(run_rc "$work/out" "$work/err" "$tool" --help)" 0 "$name --help: exit status"
    t_assert_file_match "$work/out" "^Usage:" "$name --help on stdout"
    t_assert_eq "$(cat "$work/err")" "" "$name --help: stderr"
    t_assert_eq "$(run_rc "$work/out" "$work/err" "$tool" --bogus)" 2 "$name --bogus: exit status"
    t_assert_file_match "$work/err" "--bogus" "$name --bogus: message"
    t_assert_eq "$(cat "$work/out")" "" "$name --bogus: stdout"
done
# dshm-attach accepted any --word with a value, and --help was "needs a value".
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHM_ATTACH" s read --offest 8)" 2 "dshm-attach with a misspelt option"
t_assert_file_match "$work/err" "--offest" "its message"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHM_ATTACH" s)" 2 "dshm-attach without a command"
t_assert_file_match "$work/err" "need SEGMENT and COMMAND" "its message"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHM_ATTACH" --socket "$work/none.sock" s read)" 3 \
    "dshm-attach with no dshmd"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMCTL")" 2 "dshmctl without a command"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMCTL" frobnicate)" 2 "dshmctl with an unknown command"
t_assert_file_match "$work/err" "unknown command 'frobnicate'" "its message"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMCTL" segments peers)" 2 "dshmctl with two commands"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMCTL" --socket "$work/none.sock" segments)" 3 \
    "dshmctl with no dshmd"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMCTL" --socket "$work/x.sock" domain-xml --snippet --segment a)" 0 \
    "dshmctl --socket P domain-xml"
t_assert_file_match "$work/out" "<server path='$work/x.sock'/>" "domain-xml with the socket given before it"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMCTL" domain-xml --help)" 0 "dshmctl domain-xml --help"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMD" stray)" 2 "dshmd with an argument"

t_step "dshmctl keygen: a new key of 32 bytes, mode 0600, never over an existing file"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMCTL" keygen "$work/key")" 0 "dshmctl keygen ($(cat "$work/err"))"
t_assert_eq "$(stat -c '%s %a' "$work/key")" "32 600" "the key's size and mode"
cp "$work/key" "$work/key.first"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMCTL" keygen "$work/key")" 3 "dshmctl keygen over an existing file"
cmp -s "$work/key" "$work/key.first" || t_fail "keygen changed an existing key"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMCTL" keygen)" 2 "dshmctl keygen without FILE"

t_step "dshmd --check-config: the whole configuration, or the problem"
example=$TOP/data/dshmd.conf.example
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMD" --check-config --config "$example")" 0 \
    "check of the example configuration ($(cat "$work/err"))"
for line in '^host-id = 1$' '^listen = 10.0.0.1:7450$' '^poll-us = 0$' '^# ack-timeout-ms = 10000  \(default\)$' \
    '^# write-ahead-pages = 16  \(default\)$' '^# io-thread = true  \(default\)$' '^# report-ms = 1000  \(default\)$' \
    '^strong-min-share = 0.25$' '^\[peer h2\]$' '^\[segment counters\]$' '^size = 1M$'; do
    t_assert_file_match "$work/out" "$line" "--check-config output"
done
# It parses back to itself.
cp "$work/out" "$work/printed.conf"
t_assert_eq "$(run_rc "$work/out2" "$work/err" "$DSHMD" --check-config --config "$work/printed.conf")" 0 \
    "check of the printed configuration ($(cat "$work/err"))"
diff <(tail -n +2 "$work/out") <(tail -n +2 "$work/out2") >/dev/null || t_fail "the printed configuration does not print the same"
printf '[dshmd]\nhost-id = 1\nlisten = 127.0.0.1:7450\n[segment a]\nsize = 4K\nowner = 1\n[segment a]\nsize = 8K\n' >"$work/dup.conf"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMD" --check-config --config "$work/dup.conf")" 2 "a segment given twice"
t_assert_file_match "$work/err" "dup.conf:7: \[segment a\]: group given twice \(first at line 4\)" "its message"
t_assert_eq "$(cat "$work/out")" "" "no configuration printed for an invalid file"
printf '[dshmd]\nhost-id = 1\nlisten = no-such-host.invalid:7450\n[segment a]\nsize = 4K\nowner = 1\n' >"$work/res.conf"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMD" --check-config --config "$work/res.conf")" 2 "an unresolvable listen"
t_assert_file_match "$work/err" "\[dshmd\] listen: cannot resolve 'no-such-host.invalid'" "its message"
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHMD" --check-config --config "$work/none.conf")" 3 "an unreadable file"

t_step "the guest tools: --version, unknown commands and options, no device"
for tool in "${GUEST_TOOLS[@]}"; do
    name=${tool##*/}
    t_assert_eq "$(run_rc "$work/out" "$work/err" "$tool" --version)" 0 "$name --version: exit status"
    t_assert_eq "$(cat "$work/out")" "$name $version" "$name --version"
    t_assert_eq "$(run_rc "$work/out" "$work/err" "$tool" --help)" 0 "$name --help: exit status"
    t_assert_eq "$(run_rc "$work/out" "$work/err" "$tool" --bogus)" 2 "$name --bogus: exit status"
    t_assert_file_match "$work/err" "--bogus" "$name --bogus: message"
done
# dshm-tool looked for a device first and said "no ivshmem device" (exit 3).
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHM_TOOL" frobnicate)" 2 "dshm-tool with an unknown command"
t_assert_file_match "$work/err" "unknown command 'frobnicate'" "its message"
# This machine has no ivshmem device: "not there" is 3 in the one table.
t_assert_eq "$(run_rc "$work/out" "$work/err" "$DSHM_TOOL" peek --offset 0)" 3 "dshm-tool without a device"
t_assert_file_match "$work/err" "no ivshmem device" "its message"

t_step "man pages: render cleanly, cover every option and configuration key"
mandir=$MESON_BUILD/docs/man
declare -A tool_of=([dshmd.8]=$DSHMD [dshmctl.1]=$DSHMCTL [dshm-attach.1]=$DSHM_ATTACH
    [dshm-tool.1]=${GUEST_TOOLS[0]} [dshm-lock.1]=${GUEST_TOOLS[1]})
for page in dshm.7 dshmd.8 dshmd.conf.5 dshmctl.1 dshm-attach.1 dshm-lock.1 dshm-tool.1; do
    [ -s "$mandir/$page" ] || t_fail "man page $page was not built (is scdoc installed? make deps)"
    MANWIDTH=80 man --nh --nj --warnings -l "$mandir/$page" >"$work/man.txt" 2>"$work/man.err" || t_fail "man -l $page"
    t_assert_eq "$(cat "$work/man.err")" "" "man's warnings for $page"
    t_assert_file_match "$work/man.txt" "^SEE ALSO" "$page's sections"
    tool=${tool_of[$page]:-}
    [ -n "$tool" ] || continue
    "$tool" --help >"$work/help" 2>&1 || true
    [ "${tool##*/}" = dshmctl ] && "$tool" domain-xml --help >>"$work/help" 2>&1
    for opt in $(grep -oE -- '--[a-z][a-z-]+' "$work/help" | sort -u); do
        grep -qF -- "$opt" "$work/man.txt" || t_fail "$page does not document $opt (from ${tool##*/} --help)"
    done
done
MANWIDTH=200 man --nh --nj -l "$mandir/dshmd.conf.5" >"$work/conf.txt" 2>/dev/null
"$DSHMD" --check-config --config "$TOP/data/dshmd.conf.example" >"$work/effective.conf"
for key in $(sed -nE 's/^#? ?([a-z][a-z-]*) = .*/\1/p' "$work/effective.conf" | sort -u); do
    grep -qE -- "(^|[^a-z-])$key = " "$work/conf.txt" || t_fail "dshmd.conf(5) does not document the key $key"
done
# The exit table of dshm(7) is the header's.
MANWIDTH=80 man --nh --nj -l "$mandir/dshm.7" >"$work/dshm7.txt" 2>/dev/null
for code in $(sed -nE 's/^ *DSHM_EXIT_[A-Z_]+ = ([0-9]+),/\1/p' "$TOP/include/dshm/exit_codes.h"); do
    grep -qE "^ {7}$code$" "$work/dshm7.txt" || t_fail "dshm(7) lacks exit status $code"
done

t_step "bash completion of dshmctl"
# complete_words WORDS...: what the completion offers for the last word.
complete_words() {
    bash -c '
        source /usr/share/bash-completion/bash_completion
        source "$1"; shift
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
        COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
        _dshmctl dshmctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf "%s\n" "${COMPREPLY[@]}"' _ "$TOP/data/bash-completion/dshmctl" "$@" | sort | tr '\n' ' '
}
PATH=$(dirname "$DSHMCTL"):$PATH
t_assert_eq "$(complete_words dshmctl seg)" "segments " "dshmctl seg<TAB>"
t_assert_eq "$(complete_words dshmctl domain-xml --ty)" "--type " "dshmctl domain-xml --ty<TAB>"
t_assert_eq "$(complete_words dshmctl domain-xml --type '')" "kvm qemu " "dshmctl domain-xml --type <TAB>"
# Segment names come from the running dshmd.
printf '[dshmd]\nhost-id = 1\nlisten = 127.0.0.1:%s\nsocket = %s\n[segment alpha]\nsize = 64K\nowner = 1\n[segment beta]\nsize = 64K\nowner = 1\n' \
    $((20000 + RANDOM % 20000)) "$work/c.sock" >"$work/c.conf"
"$DSHMD" --config "$work/c.conf" >"$work/c.log" 2>&1 &
cpid=$!
t_wait_until 30 test -S "$work/c.sock" || { cat "$work/c.log"; t_fail "dshmd did not make its socket"; }
t_assert_eq "$(complete_words dshmctl --socket "$work/c.sock" domain-xml --segment '')" "alpha beta " \
    "dshmctl --socket S domain-xml --segment <TAB>"
kill "$cpid"
wait "$cpid" || true
cpid=

t_step "make install DESTDIR=: sbin, bin, libexec/dshm/guest, sysconfdir/dshm, the unit, man pages, completion"
dest=$work/dest
make -C "$TOP" --no-print-directory install DESTDIR="$dest" MESON_BUILD="$MESON_BUILD" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; t_fail "make install"; }
eval "$(meson introspect --buildoptions "$MESON_BUILD" | python3 -c '
import json, os, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
for k in ("prefix", "bindir", "sbindir", "libexecdir", "sysconfdir", "mandir", "datadir"):
    print("%s=%s" % (k, os.path.join(o["prefix"], o[k])))')"
for f in "$sbindir/dshmd" "$bindir/dshmctl" "$bindir/dshm-attach" "$libexecdir/dshm/guest/dshm-tool" \
    "$libexecdir/dshm/guest/dshm-lock" "$sysconfdir/dshm/dshmd.conf.example" "$mandir/man8/dshmd.8" \
    "$mandir/man5/dshmd.conf.5" "$mandir/man7/dshm.7" "$mandir/man1/dshmctl.1" "$mandir/man1/dshm-attach.1" \
    "$mandir/man1/dshm-lock.1" "$mandir/man1/dshm-tool.1" "$datadir/bash-completion/completions/dshmctl" \
    "$datadir/doc/dshm/protocol.md"; do
    [ -f "$dest$f" ] || t_fail "$f is not installed (installed: $(cd "$dest" && find . -type f | tr '\n' ' '))"
done
for f in dshm-tool dshm-lock dshmd; do
    [ ! -e "$dest$bindir/$f" ] || t_fail "$bindir/$f is installed: not a host user's command"
done
unit=$(cd "$dest" && find . -name dshmd.service)
t_assert_match "$unit" "^\./${prefix#/}/lib/systemd/system/dshmd.service$|^\./(usr/)?lib/systemd/system/dshmd.service$" "the unit's place"
t_assert_file_match "$dest/$unit" "^ExecStart=$sbindir/dshmd --config $sysconfdir/dshm/dshmd.conf$" "the unit's ExecStart"
t_say "   installed: $(cd "$dest" && find . -type f | sort | tr '\n' ' ')"
t_say "ok"
