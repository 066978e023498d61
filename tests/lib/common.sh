# shellcheck shell=bash
# Common environment for dshm's integration tests, the demo and the benches.
# Source it first; then source testbed.sh if the test needs simulated hosts.
#
#   DSHM_ACCEL=kvm|tcg   accelerator for guests (default: probed, see t_accel)
#   DSHM_TEST_VERBOSE=1  echo every step

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$TOP/build
QEMU_BIN=${QEMU_BIN:-$BUILD/qemu/build/qemu-system-x86_64}
IVSHMEM_SERVER=$BUILD/qemu/build/contrib/ivshmem-server/ivshmem-server
IMAGE_KERNEL=$BUILD/images/vmlinuz
IMAGE_INITRD=$BUILD/images/initramfs.cpio.gz
MESON_BUILD=${MESON_BUILD:-$BUILD/meson}
TB_REAPER=$MESON_BUILD/tests/tb-reaper
DSHM_TOOL=$MESON_BUILD/guest-tools/dshm-tool
# The guest tools packed into the image, in the Makefile's order.
GUEST_TOOLS=("$MESON_BUILD/guest-tools/dshm-tool" "$MESON_BUILD/guest-tools/dshm-lock")
QEMU_FIRMWARE=(-L /usr/share/seabios -L /usr/share/qemu -L /usr/lib/ipxe/qemu)

t_say() { printf '%s\n' "$*"; }
t_step() { printf -- '-- %s\n' "$*"; }
t_fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# t_assert_eq ACTUAL EXPECTED WHAT
t_assert_eq() { [ "$1" = "$2" ] || t_fail "$3: got '$1', expected '$2'"; }
# t_assert_match TEXT REGEX WHAT
t_assert_match() { grep -Eq -- "$2" <<<"$1" || t_fail "$3: '$2' not found in: $1"; }
# t_assert_file_match FILE REGEX WHAT
t_assert_file_match() { grep -Eq -- "$2" "$1" || { tail -n 30 "$1" >&2; t_fail "$3: '$2' not in $1"; }; }
# t_assert_file_no_match FILE REGEX WHAT
t_assert_file_no_match() { ! grep -Eq -- "$2" "$1" || t_fail "$3: '$2' in $1: $(grep -E -- "$2" "$1" | head -1)"; }

t_need_built() {
    local f
    for f in "$QEMU_BIN" "$IMAGE_KERNEL" "$IMAGE_INITRD" "$TB_REAPER" "$DSHM_TOOL"; do
        [ -e "$f" ] || t_fail "$f is missing: run 'make' first"
    done
}

# t_wait_until TIMEOUT_S CMD...: runs CMD every 0.1 s until it succeeds (0)
# or TIMEOUT_S seconds have passed (1).
t_wait_until() {
    local t=$1 i
    shift
    for i in $(seq 1 $((t * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# t_wait_for_file_match FILE REGEX TIMEOUT_S: poll until FILE matches.
t_wait_for_file_match() { t_wait_until "$3" grep -Eq -- "$2" "$1" 2>/dev/null; }

# t_wait_console HOST NAME REGEX SECS CONSOLE LOG: poll until a guest's
# CONSOLE file matches REGEX; otherwise show the end of the console and of
# its QEMU LOG and fail the test.
t_wait_console() {
    local h=$1 name=$2 re=$3 t=$4 console=$5 log=$6
    t_wait_for_file_match "$console" "$re" "$t" && return 0
    echo "---- console of $name on $h:" >&2
    tail -n 30 "$console" >&2 2>/dev/null
    echo "---- QEMU log of $name on $h:" >&2
    tail -n 20 "$log" >&2 2>/dev/null
    t_fail "$name on $h: '$re' did not appear within ${t}s"
}

# ---------------------------------------------------------------- guests

# t_guest_cmdline CMD: the kernel command line of a guest of our image that
# runs CMD (base64, so any quoting survives) and powers off.  no_timer_check:
# under TCG on a loaded machine the kernel's IO-APIC timer check can miss
# its window and panic ("IO-APIC + timer doesn't work", seen in t-vm-kill);
# cloud images pass it for the same reason.
t_guest_cmdline() { printf 'console=ttyS0 panic=-1 quiet no_timer_check dshm.cmd64=%s' "$(printf '%s' "$1" | base64 -w0)"; }

# t_qemu_guest_args CMD [SERIAL]: the common QEMU arguments of a dshm guest
# that runs CMD (no default devices, our kernel and initramfs, the
# accelerator of t_accel), one a line.  The serial console goes to stdout
# unless SERIAL names a chardev id to use instead.
t_qemu_guest_args() {
    local accel
    accel=$(t_accel)
    _t_qemu_args "$accel" "$1" "${2:-}"
}

# _t_qemu_args ACCEL CMD SERIAL: t_qemu_guest_args with the accelerator given.
_t_qemu_args() {
    printf '%s\n' "${QEMU_FIRMWARE[@]}" -accel "$1" -m 128 -nodefaults -no-user-config \
        -display none -no-reboot -serial "${3:+chardev:}${3:-stdio}" \
        -kernel "$IMAGE_KERNEL" -initrd "$IMAGE_INITRD" -append "$(t_guest_cmdline "$2")"
}

# t_guest_exit_status LOG: the exit status the guest command reported, or
# "none" when the guest never finished it.
t_guest_exit_status() {
    local s
    s=$(sed -n 's/^DSHM-CMD-EXIT=\([0-9]*\).*/\1/p' "$1" | tail -n 1)
    echo "${s:-none}"
}

# ---------------------------------------------------------------- accelerator

# t_accel: prints kvm or tcg.  DSHM_ACCEL overrides.  Otherwise probes
# once per boot of this machine (cached in build/accel.probe): a short KVM
# guest boot that must reach userspace within 20 s; else TCG.
t_accel() {
    if [ -n "${DSHM_ACCEL:-}" ]; then
        case "$DSHM_ACCEL" in kvm | tcg) echo "$DSHM_ACCEL"; return ;; esac
        t_fail "DSHM_ACCEL must be kvm or tcg, not '$DSHM_ACCEL'"
    fi
    local cache=$BUILD/accel.probe boot
    boot=$(cat /proc/sys/kernel/random/boot_id)
    if [ -f "$cache" ] && [ "$(sed -n 1p "$cache")" = "$boot" ]; then
        sed -n 2p "$cache"
        return
    fi
    local result=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        local log args
        log=$(mktemp)
        mapfile -t args < <(_t_qemu_args kvm 'echo DSHM-PROBE-OK' "")
        timeout 20 "$QEMU_BIN" "${args[@]}" >"$log" 2>&1 </dev/null || true
        grep -q '^DSHM-PROBE-OK' "$log" && result=kvm
        rm -f "$log"
    fi
    # Written whole, then renamed: a concurrent reader never sees half a file.
    printf '%s\n%s\n' "$boot" "$result" >"$cache.$$"
    mv -f "$cache.$$" "$cache"
    echo "$result"
}

# ---------------------------------------------------------------- qtests

# t_run_qtest NAME [ARGS...]: runs QEMU's qtest program NAME (built in the
# QEMU build tree) against our patched binary with TAP output.  Sets
# QTEST_OUT (its output, also printed) and QTEST_RC (its exit status).
t_run_qtest() {
    local prog=$BUILD/qemu/build/tests/qtest/$1 work
    shift
    [ -x "$prog" ] || t_fail "$prog not built: run 'make qemu'"
    work=$(mktemp -d)
    # The program derives the target from the binary's name, so the firmware
    # paths go through a wrapper named qemu-system-x86_64.
    printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$QEMU_BIN" "${QEMU_FIRMWARE[*]}" >"$work/qemu-system-x86_64"
    chmod +x "$work/qemu-system-x86_64"
    # QEMU's embedded ivshmem-server can write to a socket that QEMU already
    # closed while a test tears down; with SIGPIPE ignored that write fails
    # with EPIPE instead of killing the program.  Pass/fail comes from the
    # program's exit status and its own TAP lines.
    set +e
    QTEST_OUT=$(trap '' PIPE; cd "$work" && QTEST_QEMU_BINARY="$work/qemu-system-x86_64" "$prog" "$@" --tap 2>&1)
    QTEST_RC=$?
    set -e
    rm -rf "$work"
    printf '%s\n' "$QTEST_OUT"
}

# t_assert_qtests GROUP NAME...: every named test of GROUP passed, none failed
# or was skipped, and the program exited 0.
t_assert_qtests() {
    local group=$1 t
    shift
    t_assert_eq "$QTEST_RC" 0 "exit status of the qtest program"
    if grep -q '^ok .* # SKIP' <<<"$QTEST_OUT"; then t_fail "$group qtests skipped"; fi
    t_assert_eq "$(grep -c '^not ok ' <<<"$QTEST_OUT" || true)" 0 "failing $group qtests"
    t_assert_eq "$(grep -c '^ok ' <<<"$QTEST_OUT" || true)" $# "passing $group qtests"
    for t in "$@"; do
        t_assert_match "$QTEST_OUT" "^ok [0-9]+ /x86_64/$group/$t\$" "qtest $t"
    done
}
