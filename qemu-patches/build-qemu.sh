#!/bin/bash
# Fetch Debian's QEMU source package, apply our patch series, build QEMU.
#
# Usage: build-qemu.sh QEMU_DEB_VERSION SRC_DIRNAME BUILD_ROOT
#
# Idempotent and incremental:
#  - the source package is downloaded once per pinned version (build/qemu/dl);
#  - the series is re-applied only when a patch or the series file changed:
#    the previously applied patches are reversed from their saved copies,
#    then the current series is applied, so only touched files change and
#    ninja rebuilds only what depends on them;
#  - configure runs again only when its flags change.
set -euo pipefail

version=$1 dirname=$2
mkdir -p "$3"; root=$(cd "$3" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
dl=$root/dl
src=$dl/$dirname
bld=$root/build
applied=$root/applied   # copies of the patches currently applied to $src

log() { printf 'build-qemu: %s\n' "$*"; }
die() { printf 'build-qemu: error: %s\n' "$*" >&2; exit 1; }

log "QEMU source package: qemu $version (Debian)"

# 1. Source, with Debian's own patches applied by dpkg-source.
if [ "$(cat "$dl/.version" 2>/dev/null)" != "$version" ] || [ ! -d "$src" ]; then
    command -v dpkg-source >/dev/null || die "dpkg-source missing: run 'make deps' as root"
    rm -rf "$dl" "$applied" "$bld"
    mkdir -p "$dl"
    log "downloading with apt-get source (once per version)"
    if ! (cd "$dl" && apt-get source -q "qemu=$version" >apt-source.log 2>&1); then
        tail -n 20 "$dl/apt-source.log" >&2
        die "apt-get source qemu=$version failed: are deb-src entries enabled and the apt lists fresh? ('make deps' does both)"
    fi
    [ -d "$src" ] || die "apt-get source did not unpack $dirname"
    echo "$version" >"$dl/.version"
fi

# 2. Our series, quilt style: qemu-patches/series lists *.patch in order.
mkdir -p "$applied"
want=$(grep -v -e '^#' -e '^[[:space:]]*$' "$here/series" || true)
same=1
if [ "$(cat "$applied/series" 2>/dev/null)" != "$want" ]; then
    same=0
else
    for p in $want; do cmp -s "$here/$p" "$applied/$p" || same=0; done
fi
if [ $same = 0 ]; then
    if [ -f "$applied/series" ]; then
        for p in $(tac "$applied/series"); do
            log "reverting $p"
            patch -d "$src" -p1 -R -E -s --no-backup-if-mismatch <"$applied/$p" \
                || die "could not revert $p: the tree at $src was modified by hand; 'make qemu-distclean' and retry"
        done
    fi
    rm -f "$applied"/*
    for p in $want; do
        [ -f "$here/$p" ] || die "series names $p but qemu-patches/$p does not exist"
        log "applying $p"
        patch -d "$src" -p1 -E -s --no-backup-if-mismatch <"$here/$p" || die "$p does not apply"
        cp "$here/$p" "$applied/$p"
        printf '%s\n' "$p" >>"$applied/series"
    done
    [ -n "$want" ] || : >"$applied/series"
else
    log "patch series unchanged ($(echo $want | wc -w) patches)"
fi

# 2b. The series adds include/hw/misc/dshm-wire.h, a byte-identical copy of
#     our include/dshm/wire.h (QEMU must use the same values as dshmd and the
#     guest tools).  Refuse to build a QEMU whose copy has drifted.
wire=$(cd "$here/.." && pwd)/include/dshm/wire.h
wire_copy=$src/include/hw/misc/dshm-wire.h
wire_patch=$(grep -l '^+++ b/include/hw/misc/dshm-wire.h' "$here"/*.patch 2>/dev/null | head -n 1 || true)
[ -f "$wire_copy" ] || die "the series did not create include/hw/misc/dshm-wire.h in $src"
if ! cmp -s "$wire" "$wire_copy"; then
    diff -u "$wire" "$wire_copy" | head -n 20 >&2 || true
    die "include/hw/misc/dshm-wire.h (added by qemu-patches/${wire_patch##*/}) differs from include/dshm/wire.h: it must be a byte-identical copy; regenerate that patch from include/dshm/wire.h (see qemu-patches/README.md)"
fi

# 3. Configure: x86_64 system emulator with KVM and TCG, tools (ivshmem-server),
#    no docs, no UI, no blobs.
flags="--target-list=x86_64-softmmu --without-default-features --enable-kvm --enable-tcg
 --enable-tools --disable-docs --disable-install-blobs --disable-werror"
if [ "$(cat "$bld/.configured" 2>/dev/null)" != "$flags" ] || [ ! -f "$bld/build.ninja" ]; then
    rm -rf "$bld"; mkdir -p "$bld"
    log "configuring"
    # shellcheck disable=SC2086
    if ! (cd "$bld" && "$src/configure" $flags >configure.log 2>&1); then
        tail -n 30 "$bld/configure.log" >&2
        die "configure failed (full log: $bld/configure.log)"
    fi
    echo "$flags" >"$bld/.configured"
fi

# 4. Build what we use: the emulator, the stock ivshmem server, the ivshmem
#    qtests (QEMU's own and ours for dsm=on).
log "building"
ninja -C "$bld" qemu-system-x86_64 contrib/ivshmem-server/ivshmem-server \
    tests/qtest/ivshmem-test tests/qtest/ivshmem-dsm-test
log "built $bld/qemu-system-x86_64 ($("$bld/qemu-system-x86_64" --version | head -n 1))"
