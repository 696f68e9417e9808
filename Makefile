# rkos — top-level commands. `make test` is what CI runs (.ci/run).
#   make iso    dist/rkos-<version>-amd64.iso (K3S_BINARY=/path/k3s to use a local k3s;
#               K3S_STANDIN=1 for a TEST image with the k3s stand-in: *-standin.iso)
#               ARCH=arm64: dist/rkos-<version>-arm64.iso (UEFI only), the Rust binaries
#               cross-built with Debian's toolchain (build/cargo-cross.sh), built in work/arm64/
#   make run    boot the ISO in QEMU, serial console on this terminal, empty 8 GiB disk
#   make disk-image   dist/rkos-<version>-amd64.qcow2 and .raw.xz for hypervisors (build/disk-image.mk)
#   make test   fmt, clippy, unit tests, then the QEMU tests (boot, install, upgrade) against a
#               stand-in ISO
#   make netboot  dist/netboot/ (K3S_STANDIN=1: dist/netboot-standin/): what `rkos farm serve`
#               serves to diskless nodes (docs/netboot.md)
#   make check-arm64  the workspace type-checked for arm64 with Debian's toolchain
#   make test-arm64   the arm64 stand-in ISO booted under qemu-system-aarch64 (emulation)
#               (neither is part of `make test`: CI builds amd64 only)
SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
VERSION := $(shell awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version *=/{print $$2; exit}' Cargo.toml)

# The target architecture. amd64's build directory stays work/; another architecture's is
# work/<arch>/ (build/arch.sh maps the rest), so the two never share a tree.
ARCH ?= amd64
ifeq ($(ARCH),amd64)
TRIPLE := x86_64-unknown-linux-gnu
W := work
AGENT_IMAGE := dist/rkos-agent-image.tar
else ifeq ($(ARCH),arm64)
TRIPLE := aarch64-unknown-linux-gnu
W := work/arm64
AGENT_IMAGE := dist/rkos-agent-image-arm64.tar
else
$(error ARCH=$(ARCH): expected amd64 or arm64)
endif
export RKOS_ARCH := $(ARCH)
export RKOS_WORK := $(CURDIR)/$(W)

ifeq ($(K3S_STANDIN),1)
ISO := dist/rkos-$(VERSION)-$(ARCH)-standin.iso
else
ISO := dist/rkos-$(VERSION)-$(ARCH).iso
endif
STANDIN_ISO := dist/rkos-$(VERSION)-amd64-standin.iso
ARM64_STANDIN_ISO := dist/rkos-$(VERSION)-arm64-standin.iso

ifeq ($(ARCH),amd64)
RKOS_BIN := $(TARGET_DIR)/release/rkos
INIT_BIN := $(TARGET_DIR)/$(TRIPLE)/release-init/rkos-init
AGENT_BIN := $(TARGET_DIR)/$(TRIPLE)/release/rkos-agent
else
CROSS := build/cargo-cross.sh $(ARCH)
CROSS_DIR := $(shell build/cargo-cross.sh $(ARCH) --target-dir)
RKOS_BIN := $(CROSS_DIR)/$(TRIPLE)/release/rkos
INIT_BIN := $(CROSS_DIR)/$(TRIPLE)/release-init/rkos-init
AGENT_BIN := $(CROSS_DIR)/$(TRIPLE)/release/rkos-agent
endif
# The public key baked into the image; bundles must be signed with its secret half. Made on
# first use (a development key); release builds point RKOS_KEYS_DIR at the real pair. One
# key for every architecture.
TRUSTED_KEY := $(or $(RKOS_KEYS_DIR),work/keys)/rkos.pub
ROOTFS_STAMP := $(W)/rootfs/stamp
ROOTFS_INPUTS := build/packages.txt build/rootfs.sh build/rootfs-customize.sh build/prune-modules.sh \
	build/arch.sh
IMAGE_INPUTS := $(shell find overlay -type f 2>/dev/null) build/image.sh build/k3s-standin.sh \
	build/initramfs.sh build/initramfs.modules agent/manifests/crds.yaml agent/manifests/agent.yaml \
	agent/manifests/policy.yaml $(wildcard docs/*.md)
ISO_INPUTS := iso/grub.cfg build/iso.sh $(wildcard iso/config.yaml)

# Fuzzing (fuzz/, see docs/testing.md): each target runs FUZZ_SECS seconds, one after another.
FUZZ_SECS ?= 600
FUZZ_TARGETS ?= cmdline bundle_manifest grubenv

.PHONY: fuzz test check fmt clippy unit host-deps iso standin-iso run boot-test boot-report test-lab \
	binaries k3s FORCE bundle agent-image test-root test-upgrade-qemu test-powercut bench-verify \
	netboot test-netboot boot-test-a boot-test-b check-arm64 test-arm64 boot-report-arm64 host-deps-arm64 \
	test-baremetal

test: check unit boot-test

check: fmt clippy

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

# cargo-fuzz's build flags need a nightly compiler; RUSTC_BOOTSTRAP=1 lets the stable one take
# them. No sanitizer: the targets are safe Rust, what they look for is a panic. The corpus
# grows in fuzz/corpus/ (not kept in git), seeded from fuzz/seeds/.
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && cp -n seeds/$$t/* corpus/$$t/ 2>/dev/null; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s none -O $$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECS) -print_final_stats=1 || exit 1; \
	done

host-deps:
	build/host-deps.sh

# the arm64 build's packages on top of those (build/host-deps.sh)
host-deps-arm64:
	RKOS_ARCH=arm64 build/host-deps.sh

# --- image ---------------------------------------------------------------------------------

iso: host-deps $(ISO)

standin-iso:
	$(MAKE) K3S_STANDIN=1 iso

$(ROOTFS_STAMP): $(ROOTFS_INPUTS)
	build/rootfs.sh

# cargo knows what changed; the copies below change only when the binaries do. Another
# architecture is cross-built with Debian's toolchain in a target directory of its own.
binaries:
ifeq ($(ARCH),amd64)
	$(CARGO) build --release -p rkos-cli
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release -p rkos-agent --target $(TRIPLE)
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --profile release-init -p rkos-init --target $(TRIPLE)
else
	$(CROSS) build --release -p rkos-cli
	RUSTFLAGS='-C target-feature=+crt-static' $(CROSS) build --release -p rkos-agent
	RUSTFLAGS='-C target-feature=+crt-static' $(CROSS) build --profile release-init -p rkos-init
endif
	@mkdir -p $(W)/bin
	@cmp -s $(RKOS_BIN) $(W)/bin/rkos || cp $(RKOS_BIN) $(W)/bin/rkos
	@cmp -s $(INIT_BIN) $(W)/bin/rkos-init || cp $(INIT_BIN) $(W)/bin/rkos-init
	@cmp -s $(AGENT_BIN) $(W)/bin/rkos-agent || cp $(AGENT_BIN) $(W)/bin/rkos-agent

# which k3s goes in is part of the image's identity: the kind file changes when it does
k3s:
	@mkdir -p $(W)/k3s
	@cp -p $(W)/k3s/kind $(W)/k3s/kind.old 2>/dev/null || true
	build/k3s.sh
	@cmp -s $(W)/k3s/kind $(W)/k3s/kind.old && touch -r $(W)/k3s/kind.old $(W)/k3s/kind || true

$(W)/image/stamp: $(ROOTFS_STAMP) $(IMAGE_INPUTS) $(W)/bin/rkos $(W)/bin/rkos-init $(W)/k3s/kind \
		$(AGENT_IMAGE) $(TRUSTED_KEY)
	RKOS_TRUSTED_KEY=$(TRUSTED_KEY) RKOS_AGENT_IMAGE=$(AGENT_IMAGE) \
		build/image.sh $(W)/bin/rkos $(W)/bin/rkos-init $(VERSION)
	touch $@

$(W)/bin/rkos $(W)/bin/rkos-init $(W)/bin/rkos-agent $(W)/k3s/kind: | binaries k3s
	@true

$(AGENT_IMAGE): $(W)/bin/rkos-agent build/agent-image.sh
	RKOS_AGENT_BIN=$(W)/bin/rkos-agent build/agent-image.sh $@

# The keys are made by a host rkos (an arm64 build's own cannot run here).
$(TRUSTED_KEY): | work/bin/rkos
	RKOS_BIN=work/bin/rkos build/mkbundle.sh keys

ifneq ($(ARCH),amd64)
work/bin/rkos: FORCE
	$(CARGO) build --release -p rkos-cli
	@mkdir -p work/bin
	@cmp -s $(TARGET_DIR)/release/rkos $@ || cp $(TARGET_DIR)/release/rkos $@
endif

$(ISO): binaries k3s FORCE
	@$(MAKE) --no-print-directory $(W)/image/stamp
	@if [ "$(K3S_STANDIN)" != 1 ] && [ "$$(cat $(W)/image/k3s-kind)" = stand-in ]; then \
		echo "iso: the image holds the k3s stand-in; a release name is refused" >&2; exit 1; fi
	@if [ ! -f $@ ] || [ $(W)/image/stamp -nt $@ ] || [ -n "$$(find $(ISO_INPUTS) -newer $@)" ]; then \
		build/iso.sh $@; else echo "iso: $@ is up to date"; fi

# The hypervisor disk image, and the k3s check before any compile (build/disk-image.mk).
include build/disk-image.mk

# --- run and boot tests ----------------------------------------------------------------------

run: iso
	build/run-qemu.sh $(ISO)

# The QEMU tests of the stand-in ISO (root: loop devices for the installs and bundles):
# live boots, os-config on the serial console (a server, then an agent configured to join
# it), the wizard install and unattended install, a host-side install booted under BIOS and
# UEFI, and upgrades of an installed node; clones of the disk image with their cloud-init
# seeds; two power cuts during an upgrade; an installed node beside foreign rkos volumes and a
# seed it did not ask for; one PXE
# boot of a diskless node from `rkos farm serve` (the same image, so only build/netboot.sh's
# packing is added; the longer PXE tests are `make test-netboot`); then a full disk refusing
# a bundle.
boot-test: host-deps
	$(MAKE) ARCH=amd64 K3S_STANDIN=1 iso
	$(MAKE) K3S_STANDIN=1 DISK_IMAGE_FORMATS=qcow2 disk-image
	$(MAKE) K3S_STANDIN=1 netboot
	build/netboot-deps.sh
	$(QEMU_TEST) --no-run
	$(MAKE) --no-print-directory -j2 --output-sync=target boot-test-a boot-test-b
	$(CARGO) test -p rkos-bundle --features root-tests --test full_disk

# The QEMU tests in two queues side by side: a TCG guest leaves part of the two cores idle
# (it waits on its emulated devices and timers), so two queues take about half the time of
# one (measured: docs/benchmarks.md, "The test suite"). Each queue runs its tests one at a
# time; they share nothing but the prebuilt images (read-only) and loop devices.
QEMU_TEST = RKOS_ISO=$(CURDIR)/$(STANDIN_ISO) RKOS_DISK_IMAGE=$(CURDIR)/$(STANDIN_DISK_IMAGE).qcow2 \
	RKOS_NETBOOT_DIR=$(CURDIR)/dist/netboot-standin $(CARGO) test -p rkos-tests --features qemu

# Queue a ends with two power cuts at random instants of an upgrade (the seed from the clock,
# printed; `make test-powercut N=20` is the campaign).
boot-test-a:
	$(QEMU_TEST) --test upgrade_node --test disk_image -- --test-threads=1
	RKOS_POWERCUT_N=2 $(QEMU_TEST) --test powercut -- --nocapture

boot-test-b:
	$(QEMU_TEST) --test boot --test wizard_serial --test install_iso --test install_disk \
		--test foreign_disks --test data_disks -- --test-threads=1
	$(QEMU_TEST) --test netboot -- --exact pxe_boot_smoke

boot-report: host-deps
	$(MAKE) ARCH=amd64 K3S_STANDIN=1 iso
	RKOS_ARCH=amd64 RKOS_WORK=$(CURDIR)/work build/boot-report.sh $(STANDIN_ISO)

# Longhorn's host side on two clones of the stand-in disk image (root: tgtd serves an iSCSI
# LUN from the host): `rkos doctor` passes, the LUN is discovered, logged into, formatted,
# written and read from the node, and a clone has its own initiator name (docs/baremetal.md).
# Not part of `make test`.
test-baremetal: host-deps
	$(MAKE) K3S_STANDIN=1 DISK_IMAGE_FORMATS=qcow2 disk-image
	build/baremetal-deps.sh
	RKOS_DISK_IMAGE=$(CURDIR)/$(STANDIN_DISK_IMAGE).qcow2 $(CARGO) test -p rkos-tests --features qemu \
		--test baremetal -- --test-threads=1 --nocapture

# --- arm64 -------------------------------------------------------------------------------------

# The whole workspace type-checked for aarch64 with Debian's rustc (the toolchain the arm64
# image is built with), tests and examples included.
check-arm64: host-deps-arm64
	build/cargo-cross.sh arm64 check --workspace --all-targets

# One emulated boot of the arm64 stand-in ISO: its figures into docs/benchmarks.md's arm64
# section.
boot-report-arm64: host-deps-arm64
	$(MAKE) ARCH=arm64 K3S_STANDIN=1 iso
	RKOS_ARCH=arm64 RKOS_WORK=$(CURDIR)/work/arm64 build/boot-report.sh $(ARM64_STANDIN_ISO)

# The arm64 stand-in ISO under qemu-system-aarch64 -M virt with AAVMF; the Raspberry Pi
# image checked on the host (partitions, firmware files, the first grow), booted on QEMU's
# Pi 3 board (-M raspi3b: U-Boot -> GRUB -> slot A on the SD card), and on -M virt through
# U-Boot -> GRUB -> slot A, upgraded to slot B, a broken slot rolled back; an unattended
# install from the arm64 ISO booted from its disk under AAVMF
# (software emulation: most of an hour on two cores, so not part of `make test`).
ARM64_STANDIN_RPI := dist/rkos-$(VERSION)-arm64-rpi-standin
test-arm64: host-deps-arm64
	$(MAKE) ARCH=arm64 K3S_STANDIN=1 iso
	$(MAKE) ARCH=arm64 BOARD=rpi K3S_STANDIN=1 disk-image
	RKOS_ISO_ARM64=$(CURDIR)/$(ARM64_STANDIN_ISO) RKOS_RPI_IMAGE=$(CURDIR)/$(ARM64_STANDIN_RPI).img \
		RKOS_BIN=$(CURDIR)/work/bin/rkos $(CARGO) test -p rkos-tests --features qemu \
		--test rpi_image --test rpi_raspi3b --test rpi_uboot --test boot_arm64 --test install_arm64 -- --test-threads=1 \
		--nocapture

# --- upgrades ----------------------------------------------------------------------------------

# A signed upgrade bundle of the built image next to the ISO (key in work/keys/, made if missing).
# MIN_VERSION=V gives the release a rollback floor (docs/upgrades.md, "A floor").
bundle:
	RKOS_IMAGE_DIR=$(W)/image RKOS_MIN_VERSION=$(MIN_VERSION) build/mkbundle.sh bundle $(VERSION) $(ARCH)

# The upgrade agent's container image as an OCI archive (dist/rkos-agent-image.tar).
agent-image: binaries
	@$(MAKE) --no-print-directory $(AGENT_IMAGE)

# Tests that need root but no ISO: a full disk refuses a bundle with nothing changed (also in
# `make test`), and real GRUB counts a trial slot's tries and falls back by itself on a test
# disk (boots it 5 times; `make test` shows the same on the installed image).
test-root: host-deps
	$(CARGO) test -p rkos-bundle --features root-tests --test full_disk
	$(CARGO) test -p rkos-slots --features qemu --test grub_qemu -- --test-threads=1

# Upgrade, power cuts during staging and flip, and rollback, on test slots in QEMU (tens of
# minutes under emulation: not part of `make test`).
test-upgrade-qemu: host-deps
	$(CARGO) test -p rkos-bundle --features qemu --test upgrade_qemu -- --test-threads=1

# Power cuts at N seeded random instants of an upgrade on an installed node, each followed by a
# boot that must bring up the old or the new version with a truthful `rkos status` (issue 16).
# SEED=<number> repeats a run (the seed is printed); the table lands in target/boot-logs/powercut.md.
N ?= 20
test-powercut: host-deps
	$(MAKE) K3S_STANDIN=1 iso
	RKOS_ISO=$(CURDIR)/$(STANDIN_ISO) RKOS_POWERCUT_N=$(N) $(if $(SEED),RKOS_POWERCUT_SEED=$(SEED)) \
		$(CARGO) test -p rkos-tests --features qemu --test powercut -- --nocapture

# sha256 verify throughput of a 1 GiB file.
bench-verify:
	$(CARGO) run --release -p rkos-bundle --example verify_bench

# --- netboot -------------------------------------------------------------------------------------

ifeq ($(K3S_STANDIN),1)
NETBOOT_DIR := dist/netboot-standin
else
NETBOOT_DIR := dist/netboot
endif

# The image's kernel, initrd (with the trusted keys added) and squashfs, signed, with iPXE
# (docs/netboot.md).
netboot: host-deps binaries k3s
	@$(MAKE) --no-print-directory work/image/stamp
	@if [ "$(K3S_STANDIN)" != 1 ] && [ "$$(cat work/image/k3s-kind)" = stand-in ]; then \
		echo "netboot: the image holds the k3s stand-in; a release name is refused" >&2; exit 1; fi
	build/netboot.sh $(VERSION) $(NETBOOT_DIR)

# The longer netboot QEMU tests (root: a network namespace, a bridge and a tap for dnsmasq):
# PXE under QEMU user networking, two nodes and the catch-all pool, a real dnsmasq, refused
# images, the farm gone after boot, a reboot onto a new version, the figures of
# docs/benchmarks.md. Longer than boot-test's budget allows: run by hand. (boot-test runs
# the short one, pxe_boot_smoke.)
test-netboot: host-deps
	$(MAKE) K3S_STANDIN=1 netboot
	build/netboot-deps.sh
	RKOS_NETBOOT_DIR=$(CURDIR)/dist/netboot-standin $(CARGO) test -p rkos-tests --features qemu \
		--test netboot -- --test-threads=1

# `rkos lab` end to end (root: a network namespace, a bridge, taps): one server and two agents
# from the stand-in disk image, their names, addresses and k3s configs, an agent reaching the
# server's 6443, status, reset, down (docs/lab.md). Prints the wall time of `up`.
test-lab: host-deps
	$(MAKE) K3S_STANDIN=1 DISK_IMAGE_FORMATS=qcow2 disk-image
	RKOS_DISK_IMAGE=$(CURDIR)/$(STANDIN_DISK_IMAGE).qcow2 $(CARGO) test -p rkos-tests \
		--features qemu --test lab -- --nocapture
