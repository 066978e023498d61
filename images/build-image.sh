#!/bin/bash
# Build the dshm guest image: Debian's cloud kernel + a busybox initramfs that
# carries the guest tools.  Reproducible: the same pinned packages and the same
# tool binaries give a byte-identical initramfs (sorted cpio, zeroed mtimes and
# owners, gzip -n).
#
# Usage: build-image.sh OUTDIR KERNEL_PKG KERNEL_VERSION BUSYBOX_VERSION TOOL...
#   Writes OUTDIR/vmlinuz, OUTDIR/initramfs.cpio.gz, OUTDIR/SHA256SUMS.
#   Downloaded packages are cached in OUTDIR/cache.
set -euo pipefail

out=$1 kpkg=$2 kver=$3 bbver=$4
shift 4
tools=("$@")
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out/cache"
out=$(cd "$out" && pwd)

log() { printf 'build-image: %s\n' "$*"; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }

fetch() {  # fetch PKG VERSION -> path of the .deb in the cache
    local pkg=$1 ver=$2 f
    f=$(ls "$out/cache/${pkg}_"*.deb 2>/dev/null | head -n 1 || true)
    if [ -n "$f" ] && [ "$(dpkg-deb -f "$f" Version)" = "$ver" ]; then
        echo "$f"; return
    fi
    rm -f "$out/cache/${pkg}_"*.deb
    (cd "$out/cache" && apt-get download -q "$pkg=$ver" >/dev/null 2>"$out/cache/$pkg.log") \
        || { cat "$out/cache/$pkg.log" >&2; die "apt-get download $pkg=$ver failed (run 'make deps' to refresh the apt lists)"; }
    ls "$out/cache/${pkg}_"*.deb
}

kdeb=$(fetch "$kpkg" "$kver")
bbdeb=$(fetch busybox-static "$bbver")

work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Kernel: unpack the .deb (not installed on the host), keep the bzImage.
dpkg-deb -x "$kdeb" "$work/kernel"
cp "$work/kernel/boot/vmlinuz-"* "$work/vmlinuz"

# Initramfs tree.
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,proc,sys,dev,tmp,run,etc,root}
dpkg-deb -x "$bbdeb" "$work/busybox"
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$here/init" "$root/init"
for t in "${tools[@]}"; do
    [ -x "$t" ] || die "guest tool $t is missing: build it first ('make tools')"
    file -b "$t" 2>/dev/null | grep -q 'statically linked' \
        || ldd "$t" 2>&1 | grep -q 'not a dynamic executable' \
        || die "guest tool $t is not statically linked"
    install -m 0755 "$t" "$root/usr/local/bin/$(basename "$t")"
    strip --strip-all "$root/usr/local/bin/$(basename "$t")"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
mknod -m 600 "$root/dev/console" c 5 1

# Reproducible archive: fixed order, mtimes, owners.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z \
    | cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) \
    | gzip -n -9 >"$work/initramfs.cpio.gz"

mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
(cd "$out" && sha256sum vmlinuz initramfs.cpio.gz >SHA256SUMS)
log "kernel $kpkg $kver, busybox $bbver, tools: ${tools[*]##*/}"
log "$(cd "$out" && tr '\n' ' ' <SHA256SUMS)"
