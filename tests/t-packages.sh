#!/bin/bash
# timeout: 1500
# The Debian packages (README "Install on a host"): `make deb` builds dshm,
# dshm-qemu and dshm-guest-tools from debian/ with debhelper, and lintian
# finds no error in them (its warnings are shown); the packages install on
# this machine with apt (their dependencies resolve from Debian), put every
# file where the FHS and Debian want it (dshmd in /usr/sbin, the unit in
# /lib/systemd/system, the patched emulator under /usr/lib/dshm beside — not
# over — Debian's QEMU, the guest tools under /usr/libexec/dshm/guest, man
# pages); then t-vm-two-hosts runs against the installed dshmd, dshmctl,
# dshm-attach and emulator only.  The packages are purged on every exit path.
source "$(dirname "$0")/lib/common.sh"
t_need_built
pkgs=(dshm dshm-qemu dshm-guest-tools)
for p in "${pkgs[@]}"; do
    if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q installed; then
        t_fail "$p is already installed on this machine: t-packages installs and purges it; refusing"
    fi
done
purge() { dpkg --purge "${pkgs[@]}" >/dev/null 2>&1 || true; }
trap purge EXIT

t_step "make deb: three packages, lintian without errors"
out=$BUILD/deb
make -C "$TOP" --no-print-directory deb >"$BUILD/test-logs/t-packages.make-deb.log" 2>&1 ||
    { tail -n 40 "$BUILD/test-logs/t-packages.make-deb.log"; t_fail "make deb"; }
for p in "${pkgs[@]}"; do
    ls "$out/${p}_"*.deb >/dev/null 2>&1 || t_fail "make deb built no $p package"
done
t_assert_file_no_match "$out/lintian.txt" "^E: " "lintian errors"
t_say "   lintian: $(grep -c '^W: ' "$out/lintian.txt" || true) warnings: $(sed -n 's/^W: [^ ]* \([a-z-]*\).*/\1/p' "$out/lintian.txt" | sort -u | tr '\n' ' ')"

t_step "apt installs them; the files are where they belong"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "$out"/dshm_*.deb "$out"/dshm-qemu_*.deb "$out"/dshm-guest-tools_*.deb >"$BUILD/test-logs/t-packages.apt.log" 2>&1 ||
    { tail -n 30 "$BUILD/test-logs/t-packages.apt.log"; t_fail "apt-get install of the packages"; }
for f in /usr/sbin/dshmd /usr/bin/dshmctl /usr/bin/dshm-attach /lib/systemd/system/dshmd.service \
    /etc/dshm/dshmd.conf.example /usr/share/man/man8/dshmd.8.gz /usr/share/man/man5/dshmd.conf.5.gz \
    /usr/share/man/man7/dshm.7.gz /usr/share/bash-completion/completions/dshmctl /usr/share/doc/dshm/protocol.md \
    /usr/lib/dshm/qemu-system-x86_64 /usr/lib/dshm/bin/qemu-system-x86_64 \
    /usr/libexec/dshm/guest/dshm-tool /usr/libexec/dshm/guest/dshm-lock /usr/share/man/man1/dshm-lock.1.gz; do
    [ -e "$f" ] || t_fail "$f is not installed"
done
[ ! -e /usr/bin/qemu-system-x86_64 ] || [ "$(dpkg -S /usr/bin/qemu-system-x86_64 2>/dev/null | cut -d: -f1)" != dshm-qemu ] ||
    t_fail "dshm-qemu installs /usr/bin/qemu-system-x86_64 (it must go beside Debian's)"
t_assert_eq "$(/usr/sbin/dshmd --version)" "dshmd $(dpkg-query -W -f '${Version}' dshm | sed 's/-[^-]*$//')" "the installed dshmd's version"
t_assert_file_match /lib/systemd/system/dshmd.service "^ExecStart=/usr/sbin/dshmd --config /etc/dshm/dshmd.conf$" "the unit's ExecStart"
/usr/lib/dshm/qemu-system-x86_64 -device ivshmem-doorbell,help 2>&1 | grep -q "dsm=" ||
    t_fail "the installed emulator has no ivshmem-doorbell dsm property"
# The emulator finds Debian's firmware through its wrapper.
/usr/lib/dshm/qemu-system-x86_64 -machine q35 -accel tcg -nographic -nodefaults -display none \
    -S -qmp stdio <<<'{"execute":"qmp_capabilities"}{"execute":"quit"}' >"$BUILD/test-logs/t-packages.qemu.log" 2>&1 ||
    { cat "$BUILD/test-logs/t-packages.qemu.log"; t_fail "the installed emulator does not start (firmware?)"; }

t_step "t-vm-two-hosts against the installed dshmd, dshmctl, dshm-attach and emulator"
DSHMD=/usr/sbin/dshmd DSHMCTL=/usr/bin/dshmctl DSHM_ATTACH=/usr/bin/dshm-attach \
    QEMU_BIN=/usr/lib/dshm/qemu-system-x86_64 TB_PREFIX=dshmpkg TB_NET=198.18.9 \
    bash "$TOP/tests/t-vm-two-hosts.sh" >"$BUILD/test-logs/t-packages.vm.log" 2>&1 ||
    { tail -n 40 "$BUILD/test-logs/t-packages.vm.log"; t_fail "t-vm-two-hosts with the installed binaries"; }
t_say "   t-vm-two-hosts passed with the installed binaries"

t_step "purge leaves nothing behind"
purge
trap - EXIT
for f in /usr/sbin/dshmd /usr/lib/dshm /etc/dshm /lib/systemd/system/dshmd.service; do
    [ ! -e "$f" ] || t_fail "$f is still there after dpkg --purge"
done
t_say "ok"
