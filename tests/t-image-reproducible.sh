#!/bin/bash
# timeout: 180
# The guest image build is reproducible: building it again from the same
# pinned packages and tool binaries gives byte-identical files.
source "$(dirname "$0")/lib/common.sh"
t_need_built
pin() { sed -n "s/^$1 *:= *//p" "$TOP/versions.mk"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/img"
cp -a "$BUILD/images/cache" "$work/img/cache"   # reuse the downloaded .debs
bash "$TOP/images/build-image.sh" "$work/img" "$(pin KERNEL_PKG)" "$(pin KERNEL_DEB_VERSION)" \
    "$(pin BUSYBOX_DEB_VERSION)" "${GUEST_TOOLS[@]}"
diff "$BUILD/images/SHA256SUMS" "$work/img/SHA256SUMS" || t_fail "a rebuild of the image differs"
t_say "ok: $(tr '\n' ' ' <"$work/img/SHA256SUMS")"
