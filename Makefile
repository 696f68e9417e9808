# rkos — top-level commands. `make test` is what CI runs (.ci/run).
#   make iso    dist/rkos-<version>-amd64.iso (K3S_BINARY=/path/k3s to use a local k3s;
#               K3S_STANDIN=1 for a TEST image with the k3s stand-in: *-standin.iso)
#   make run    boot the ISO in QEMU, serial console on this terminal, empty 8 GiB disk
#   make test   fmt, clippy, unit tests, then the QEMU tests (boot, install, upgrade) against a
#               stand-in ISO
SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
VERSION := $(shell awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version *=/{print $$2; exit}' Cargo.toml)
TRIPLE := x86_64-unknown-linux-gnu

ifeq ($(K3S_STANDIN),1)
ISO := dist/rkos-$(VERSION)-amd64-standin.iso
else
ISO := dist/rkos-$(VERSION)-amd64.iso
endif
STANDIN_ISO := dist/rkos-$(VERSION)-amd64-standin.iso

RKOS_BIN := $(TARGET_DIR)/release/rkos
INIT_BIN := $(TARGET_DIR)/$(TRIPLE)/release-init/rkos-init
AGENT_BIN := $(TARGET_DIR)/$(TRIPLE)/release/rkos-agent
AGENT_IMAGE := dist/rkos-agent-image.tar
# The public key baked into the image; bundles must be signed with its secret half. Made on
# first use (a development key); release builds point RKOS_KEYS_DIR at the real pair.
TRUSTED_KEY := $(or $(RKOS_KEYS_DIR),work/keys)/rkos.pub
ROOTFS_STAMP := work/rootfs/stamp
ROOTFS_INPUTS := build/packages.txt build/rootfs.sh build/rootfs-customize.sh build/prune-modules.sh
IMAGE_INPUTS := $(shell find overlay -type f 2>/dev/null) build/image.sh build/k3s-standin.sh \
	build/initramfs.sh build/initramfs.modules agent/manifests/crds.yaml agent/manifests/agent.yaml \
	agent/manifests/policy.yaml
ISO_INPUTS := iso/grub.cfg build/iso.sh $(wildcard iso/config.yaml)

# Fuzzing (fuzz/, see docs/testing.md): each target runs FUZZ_SECS seconds, one after another.
FUZZ_SECS ?= 600
FUZZ_TARGETS ?= cmdline bundle_manifest grubenv

.PHONY: fuzz test check fmt clippy unit host-deps iso standin-iso run boot-test boot-report \
	binaries k3s FORCE bundle agent-image test-root test-upgrade-qemu bench-verify

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

# --- image ---------------------------------------------------------------------------------

iso: host-deps $(ISO)

standin-iso:
	$(MAKE) K3S_STANDIN=1 iso

$(ROOTFS_STAMP): $(ROOTFS_INPUTS)
	build/rootfs.sh

# cargo knows what changed; the copies below change only when the binaries do
binaries:
	$(CARGO) build --release -p rkos-cli
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release -p rkos-agent --target $(TRIPLE)
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --profile release-init -p rkos-init --target $(TRIPLE)
	@mkdir -p work/bin
	@cmp -s $(RKOS_BIN) work/bin/rkos || cp $(RKOS_BIN) work/bin/rkos
	@cmp -s $(INIT_BIN) work/bin/rkos-init || cp $(INIT_BIN) work/bin/rkos-init
	@cmp -s $(AGENT_BIN) work/bin/rkos-agent || cp $(AGENT_BIN) work/bin/rkos-agent

# which k3s goes in is part of the image's identity: the kind file changes when it does
k3s:
	@mkdir -p work/k3s
	@cp -p work/k3s/kind work/k3s/kind.old 2>/dev/null || true
	build/k3s.sh
	@cmp -s work/k3s/kind work/k3s/kind.old && touch -r work/k3s/kind.old work/k3s/kind || true

work/image/stamp: $(ROOTFS_STAMP) $(IMAGE_INPUTS) work/bin/rkos work/bin/rkos-init work/k3s/kind \
		$(AGENT_IMAGE) $(TRUSTED_KEY)
	RKOS_TRUSTED_KEY=$(TRUSTED_KEY) RKOS_AGENT_IMAGE=$(AGENT_IMAGE) \
		build/image.sh work/bin/rkos work/bin/rkos-init $(VERSION)
	touch $@

work/bin/rkos work/bin/rkos-init work/bin/rkos-agent work/k3s/kind: | binaries k3s
	@true

$(AGENT_IMAGE): work/bin/rkos-agent build/agent-image.sh
	RKOS_AGENT_BIN=work/bin/rkos-agent build/agent-image.sh $@

$(TRUSTED_KEY): | work/bin/rkos
	RKOS_BIN=work/bin/rkos build/mkbundle.sh keys

$(ISO): binaries k3s FORCE
	@$(MAKE) --no-print-directory work/image/stamp
	@if [ "$(K3S_STANDIN)" != 1 ] && [ "$$(cat work/image/k3s-kind)" = stand-in ]; then \
		echo "iso: the image holds the k3s stand-in; a release name is refused" >&2; exit 1; fi
	@if [ ! -f $@ ] || [ work/image/stamp -nt $@ ] || [ -n "$$(find $(ISO_INPUTS) -newer $@)" ]; then \
		build/iso.sh $@; else echo "iso: $@ is up to date"; fi

# --- run and boot tests ----------------------------------------------------------------------

run: iso
	build/run-qemu.sh $(ISO)

# The QEMU tests of the stand-in ISO (root: loop devices for the installs and bundles):
# live boots, the wizard install and unattended install, a host-side install booted under
# BIOS and UEFI, and upgrades of an installed node; then a full disk refusing a bundle.
boot-test: host-deps
	$(MAKE) K3S_STANDIN=1 iso
	RKOS_ISO=$(CURDIR)/$(STANDIN_ISO) $(CARGO) test -p rkos-tests --features qemu \
		--test boot --test install_iso --test install_disk --test upgrade_node -- --test-threads=1
	$(CARGO) test -p rkos-bundle --features root-tests --test full_disk

boot-report: host-deps
	$(MAKE) K3S_STANDIN=1 iso
	build/boot-report.sh $(STANDIN_ISO)

# --- upgrades ----------------------------------------------------------------------------------

# A signed upgrade bundle of the built image next to the ISO (key in work/keys/, made if missing).
bundle:
	build/mkbundle.sh bundle $(VERSION)

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

# sha256 verify throughput of a 1 GiB file.
bench-verify:
	$(CARGO) run --release -p rkos-bundle --example verify_bench
