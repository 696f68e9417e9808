#!/usr/bin/env bash
# mmdebstrap customize hook: turns the freshly bootstrapped tree ($1) into the rkos base:
# pruned kernel modules, default user, enabled services, no caches, no per-machine identity.
set -euo pipefail
root=$1
here=$(cd "$(dirname "$0")" && pwd)

"$here/prune-modules.sh" "$root"

# apt satisfies init-system-helpers with usrmerge (which drags in perl, 40 MB) although
# mmdebstrap already merged /usr; usr-is-merged (packages.txt) stands in for it.
extra=""
for p in usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl \
         perl-modules-5.36 libperl5.36; do
    chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
        && extra="$extra $p"
done
if [ -n "$extra" ]; then
    # shellcheck disable=SC2086
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -y -q purge $extra
fi

# What an immutable node never runs, kept out of the image's weight (docs/image.md):
# - python3, pulled in by nfs-common only for its statistics scripts (mountstats, nfsiostat);
#   mount.nfs and the NFS client itself are C;
# - apt: the image is never changed in place, packages come in at build time.
# One package at a time, users first: python3's own removal script needs the interpreter.
for p in python3 python3.11 libpython3-stdlib python3-minimal python3.11-minimal \
         libpython3.11-stdlib libpython3.11-minimal media-types apt libapt-pkg6.0; do
    if chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        chroot "$root" dpkg --purge --force-depends "$p" >/dev/null
    fi
done

# Default user: uid 1000, sudo without password (overlay/etc/sudoers.d/rkos). The password
# field is '*' (no password valid) rather than locked ('!'), so SSH keys still work on nodes
# that set no password; live mode logs it in on the console without one.
chroot "$root" useradd --create-home --uid 1000 --user-group --shell /bin/bash \
    --comment "rkos node user" rkos
chroot "$root" usermod -p '*' rkos
for g in adm systemd-journal; do
    chroot "$root" getent group "$g" >/dev/null && chroot "$root" usermod -aG "$g" rkos
done

chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service \
    systemd-timesyncd.service ssh.service
# open-iscsi.service logs in to iSCSI targets listed for boot-time mounts (none on a node:
# Longhorn drives iscsiadm itself through the socket-activated iscsid); it also orders the
# console login after network-online, so a node with no DHCP lease kept its operator waiting.
# apt and dpkg timers have nothing to do on an image that never changes in place.
chroot "$root" systemctl disable open-iscsi.service apt-daily.timer apt-daily-upgrade.timer \
    dpkg-db-backup.timer e2scrub_reap.service 2>/dev/null || true
# The image's name until the config sets one (mmdebstrap copies the build host's).
echo rkos > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\trkos\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# Every node gets its own identity at boot: host keys (rkos-ssh-keygen.service),
# machine-id (systemd creates it when the file is empty) and the iSCSI initiator name
# (rkos-iscsi-initiator.service derives it from the machine id; the name open-iscsi's
# postinst made here would be every node's). Without that unit, open-iscsi's own startup
# check would still make a random one rather than share this.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
if [ -f "$root/etc/iscsi/initiatorname.iscsi" ]; then
    printf 'GenerateName=yes\n' > "$root/etc/iscsi/initiatorname.iscsi"
    chmod 0600 "$root/etc/iscsi/initiatorname.iscsi"
fi
rm -f "$root/var/lib/dbus/machine-id"

# Caches and lists a read-only node never uses.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/usr/share/doc/*/changelog* \
    "$root"/usr/share/doc/*/NEWS* "$root"/usr/share/doc/*/README*
find "$root/usr/share/doc" -mindepth 1 -depth -type d -empty -delete 2>/dev/null || true
