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
# The image's name until the config sets one (mmdebstrap copies the build host's).
echo rkos > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\trkos\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# Every node gets its own identity at boot: host keys (rkos-ssh-keygen.service) and
# machine-id (systemd creates it when the file is empty).
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

# Caches and lists a read-only node never uses.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/usr/share/doc/*/changelog* \
    "$root"/usr/share/doc/*/NEWS* "$root"/usr/share/doc/*/README*
# Byte-code caches: a read-only image cannot refresh them; python (nfs-common tools) runs fine
# from source.
find "$root/usr/lib/python3" "$root"/usr/lib/python3.* -name __pycache__ -type d -prune \
    -exec rm -rf {} + 2>/dev/null || true
find "$root/usr/share/doc" -mindepth 1 -depth -type d -empty -delete 2>/dev/null || true
