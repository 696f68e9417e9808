#!/usr/bin/env bash
# What the bare-metal QEMU test (tests/tests/baremetal.rs, `make test-baremetal`) needs beyond
# build/host-deps.sh: Debian's tgt, the userspace iSCSI target (tgtd, tgtadm) the test serves
# a LUN from, and debugfs (e2fsprogs) to read the LUN's file system on the host. The test runs
# a tgtd of its own on its own control port; the package's tgt.service, which would listen on
# every address at port 3260, is stopped and disabled when this script installed it.
set -euo pipefail
need=()
command -v tgtd >/dev/null && command -v tgtadm >/dev/null || need+=(tgt)
command -v debugfs >/dev/null || need+=(e2fsprogs)
[ "${#need[@]}" -eq 0 ] && exit 0
[ "$(id -u)" -eq 0 ] || { echo "baremetal-deps: run as root to install ${need[*]}" >&2; exit 1; }
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
case " ${need[*]} " in
    *" tgt "*) systemctl disable --now tgt.service 2>/dev/null || true ;;
esac
