# The one place where the versions of everything dshm builds on are pinned.
# Bump a version here and `make` rebuilds what depends on it.

# Debian bookworm's QEMU source package (apt-get source qemu=$(QEMU_DEB_VERSION)).
QEMU_DEB_VERSION := 1:7.2+dfsg-7+deb12u18
# Directory dpkg-source unpacks it into (upstream version, dfsg tarball).
QEMU_SRC_DIRNAME := qemu-7.2+dfsg

# Guest kernel: Debian's cloud kernel, fetched with apt-get download, never installed.
KERNEL_PKG         := linux-image-6.1.0-56-cloud-amd64
KERNEL_DEB_VERSION := 6.1.192-2
# Guest userland: Debian's static busybox.
BUSYBOX_DEB_VERSION := 1:1.35.0-4+deb12u1+b1
