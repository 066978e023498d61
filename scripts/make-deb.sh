#!/bin/bash
# make deb: dshm's Debian packages (debian/) from this tree, into OUT
# (build/deb): dshm, dshm-qemu, dshm-guest-tools, then lintian on them.
#
# The package is built from a copy of the tree's files (git ls-files: tracked
# and untracked-but-not-ignored, as they are in the work tree) in
# OUT/dshm-VERSION, so that dpkg-buildpackage's outputs land in OUT and not
# beside the checkout; the copy's build/qemu is a link to this tree's, so the
# patched QEMU that `make` built is reused (build-qemu.sh checks it is
# current).  Exit status: 0 packages built and lintian found no error.
set -euo pipefail
out=${1:?usage: make-deb.sh OUTDIR}
top=$(cd "$(dirname "$0")/.." && pwd)
die() { printf 'make deb: error: %s\n' "$*" >&2; exit 1; }
command -v dpkg-buildpackage >/dev/null || die "dpkg-buildpackage not found (make deps installs dpkg-dev and debhelper)"
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
src=$out/dshm-${version%-*}
rm -rf "$out"
mkdir -p "$src/build"
(cd "$top" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -C "$src" -xf -
mkdir -p "$top/build/qemu"
ln -s "$(cd "$top/build/qemu" && pwd -P)" "$src/build/qemu"
echo "make deb: building dshm $version in $src"
(cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
    dpkg-buildpackage -b -us -uc >"$out/build.log" 2>&1) ||
    { tail -n 40 "$out/build.log" >&2; die "dpkg-buildpackage failed (log: $out/build.log)"; }
ls "$out"/*.deb
echo "make deb: lintian"
lintian --fail-on error --info --display-level '>=warning' "$out"/dshm_*.changes | tee "$out/lintian.txt" ||
    die "lintian found errors ($out/lintian.txt)"
echo "make deb: done: $(cd "$out" && ls *.deb | tr '\n' ' ')"
