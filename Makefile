# dshm — distributed shared memory for QEMU/KVM guests across hosts.
#
#   make deps     install the Debian packages (root; enables deb-src)
#   make          QEMU with our patches, hostd and guest tools, guest image
#   make check    everything above, then all tests (root)
#   make demo     everything above, then the demo on simulated hosts (root)
#   make fuzz     the libFuzzer targets of fuzz/ into build/meson-fuzz (fuzz/README.md)
#   make install  hostd, host tools, guest tools, unit, man pages, completion
#                 (PREFIX=/usr/local, DESTDIR= for staging; README "Install")
#   make deb      Debian packages dshm, dshm-qemu, dshm-guest-tools into
#                 build/deb (debian/, scripts/make-deb.sh), checked by lintian
#   make clean    our build outputs (keeps the QEMU download and build)
#   make distclean  all of build/
#
# Versions of everything fetched from Debian are pinned in versions.mk.

include versions.mk

SHELL := /bin/bash
TOP := $(CURDIR)
BUILD := $(TOP)/build
MESON_BUILD := $(BUILD)/meson
QEMU_ROOT := $(BUILD)/qemu
IMAGES := $(BUILD)/images
GUEST_TOOLS := $(MESON_BUILD)/guest-tools/dshm-tool $(MESON_BUILD)/guest-tools/dshm-lock

.PHONY: all deps qemu tools images check demo fuzz install deb clean distclean qemu-distclean format

all: qemu tools images

deps:
	@bash scripts/deps.sh

qemu:
	@bash qemu-patches/build-qemu.sh '$(QEMU_DEB_VERSION)' '$(QEMU_SRC_DIRNAME)' '$(QEMU_ROOT)'

$(MESON_BUILD)/build.ninja:
	meson setup $(MESON_BUILD)

tools: $(MESON_BUILD)/build.ninja
	@ninja -C $(MESON_BUILD)
	@ln -sf build/meson/compile_commands.json compile_commands.json

images: tools
	@bash images/build-image.sh $(IMAGES) '$(KERNEL_PKG)' '$(KERNEL_DEB_VERSION)' \
	    '$(BUSYBOX_DEB_VERSION)' $(GUEST_TOOLS)

check: deps
	@$(MAKE) --no-print-directory all
	@bash tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/demo.sh

# FHS layout below PREFIX (sbin/dshmd, bin/dshmctl and dshm-attach,
# libexec/dshm/guest for the static guest tools, etc/dshm, the systemd unit
# directory, share/man, bash-completion); DESTDIR stages it.
PREFIX ?= /usr/local
install: tools
	@meson configure $(MESON_BUILD) --prefix=$(PREFIX) >/dev/null
	@ninja -C $(MESON_BUILD)
	@meson install -C $(MESON_BUILD) --no-rebuild $(if $(DESTDIR),--destdir '$(DESTDIR)')

deb: qemu
	@bash scripts/make-deb.sh $(BUILD)/deb

fuzz:
	@bash fuzz/build.sh $(BUILD)/meson-fuzz

format:
	clang-format -i $$(git ls-files '*.cc' '*.h' | grep -v '^include/dshm/wire.h$$')

clean:
	rm -rf $(MESON_BUILD) $(BUILD)/meson-* $(BUILD)/test-logs $(IMAGES)/vmlinuz \
	    $(IMAGES)/initramfs.cpio.gz $(IMAGES)/SHA256SUMS compile_commands.json

qemu-distclean:
	rm -rf $(QEMU_ROOT)

distclean:
	rm -rf $(BUILD) compile_commands.json
