# --- hypervisor gold disk image (included by the Makefile) ---------------------------------------
#   make disk-image       dist/rkos-<version>-<arch>.qcow2 and .raw.xz: the installed layout,
#                         made by the installer from the ISO's pieces (docs/disk-image.md);
#                         K3S_BINARY= and K3S_STANDIN=1 as for `make iso` (*-standin.*)
#   DISK_IMAGE_SIZE=8G    a bigger virtual disk (default: the smallest the layout takes)
#   DISK_IMAGE_FORMATS=qcow2   only some of the formats (default: qcow2 raw.xz)
#   ARCH=arm64            dist/rkos-<version>-arm64.*: the same disk for arm64 UEFI machines
#                         (built from work/arm64's pieces by the installer of this host)
#   ARCH=arm64 BOARD=rpi  dist/rkos-<version>-arm64-rpi.img: raw, for `dd` to an SD card or USB
#                         disk; the Pi's firmware and U-Boot on the ESP (docs/rpi.md)
ARCH ?= amd64
DISK_IMAGE := dist/rkos-$(VERSION)-$(ARCH)$(if $(BOARD),-$(BOARD))$(if $(filter 1,$(K3S_STANDIN)),-standin)
STANDIN_DISK_IMAGE := dist/rkos-$(VERSION)-$(ARCH)-standin

.PHONY: disk-image standin-disk-image

# The installer that builds it is this host's rkos (work/bin/rkos), whatever ARCH is.
disk-image: host-deps k3s binaries | work/bin/rkos
	@$(MAKE) --no-print-directory $(W)/image/stamp
	@if [ "$(K3S_STANDIN)" != 1 ] && [ "$$(cat $(W)/image/k3s-kind)" = stand-in ]; then \
		echo "disk-image: the image holds the k3s stand-in; a release name is refused" >&2; exit 1; fi
	ARCH=$(ARCH) BOARD=$(BOARD) DISK_IMAGE_SIZE=$(DISK_IMAGE_SIZE) \
		DISK_IMAGE_FORMATS="$(DISK_IMAGE_FORMATS)" RKOS_BIN=work/bin/rkos \
		build/disk-image.sh $(DISK_IMAGE) $(VERSION)

standin-disk-image:
	$(MAKE) K3S_STANDIN=1 disk-image

# A build that cannot succeed says so first: where an image is made, the k3s check
# (build/k3s.sh: the pinned download, K3S_BINARY or the stand-in) runs before anything is
# compiled, even under `make -j`.
K3S_FIRST_GOALS := iso standin-iso disk-image standin-disk-image run
ifneq ($(filter $(K3S_FIRST_GOALS),$(MAKECMDGOALS)),)
binaries: | k3s
endif
