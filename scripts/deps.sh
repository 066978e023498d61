#!/bin/bash
# Install every Debian package dshm needs to build, test and run.
# Enables deb-src (needed by `apt-get source qemu`) when it is not enabled.
# Idempotent: safe to rerun.
set -euo pipefail

die() { printf 'make deps: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages and enables deb-src); try: sudo make deps"
command -v apt-get >/dev/null || die "apt-get not found: dshm supports Debian 12 (bookworm) hosts"

PKGS=(
  # our C++ build, unit tests and tools
  build-essential g++ pkg-config meson ninja-build libglib2.0-dev libjson-glib-dev check
  clang-format
  # man pages (docs/man, scdoc sources) and bash completion (t-host-cli)
  scdoc bash-completion
  # make deb: Debian packages (debian/) and their check
  debhelper fakeroot lintian
  # sd_notify (hostd/notify.h); t-systemd-unit: systemd-analyze verify, strace
  libsystemd-dev systemd strace
  # the clang build of `make check` (tests/run.sh: -Wthread-safety), and
  # the fuzz targets (fuzz/: libFuzzer and the sanitizers' runtimes)
  clang libclang-rt-14-dev
  # QEMU from Debian's source package
  dpkg-dev flex bison python3 python3-venv libpixman-1-dev libfdt-dev zlib1g-dev
  # QEMU firmware at run time
  seabios ipxe-qemu qemu-system-data
  # guest image (kernel and busybox are fetched with apt-get download, not installed)
  cpio gzip
  # simulated hosts, libvirt hosts
  iproute2 util-linux procps psmisc kmod libvirt-daemon libvirt-daemon-driver-qemu
  libvirt-clients libxml2-utils
  # t-testbed's TCP listeners (busybox nc; the guest image's busybox is separate)
  busybox
  # membership = corosync (hostd/membership.h): the cluster engine on every
  # simulated host (tests/lib/testbed.sh) and the libraries dshmd links
  corosync libcpg-dev libquorum-dev libvotequorum-dev libcmap-dev
)

changed=0
enable_src() {
  # deb822 sources (bookworm default)
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    if grep -q '^Types: deb$' "$f"; then
      sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"; changed=1
      echo "make deps: enabled deb-src in $f"
    fi
  done
  # one-line sources.list
  if [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list \
     && ! grep -q '^deb-src ' /etc/apt/sources.list; then
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >/etc/apt/sources.list.d/dshm-deb-src.list
    changed=1; echo "make deps: added deb-src lines in /etc/apt/sources.list.d/dshm-deb-src.list"
  fi
}
enable_src

stamp=/var/lib/apt/lists/.dshm-updated
if [ $changed = 1 ] || [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +720 2>/dev/null)" ] \
   || ! apt-cache showsrc qemu >/dev/null 2>&1; then
  echo "make deps: apt-get update"
  apt-get update -q >/dev/null
  touch "$stamp"
fi

missing=()
for p in "${PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "make deps: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
srcs=$(apt-cache showsrc qemu 2>/dev/null || true)
grep -q '^Version:' <<<"$srcs" || die "deb-src for qemu still not visible after apt-get update"
echo "make deps: all ${#PKGS[@]} packages present"
