#!/bin/sh
# Writes /run/rkos/issue (linked from /etc/issue.d/50-rkos.issue), what agetty shows above
# the login prompt: the version, the user to log in as, how agents join this node (its
# addresses as the kernel has them now, from `rkos token --hint`), and the config problems
# rkos-init and `rkos config apply` found (/run/rkos/config-errors): a node whose config is
# broken still boots, and this is how its operator learns why. Likewise the data disks that
# are missing (/run/rkos/data-disks, from `rkos data-disks --report`).
#   issue.sh          write it (rkos-issue.service: at boot, and again after os-config)
#   issue.sh --watch  write it again whenever an address comes or goes
#                     (rkos-issue-watch.service)
# When the text changed, the agettys waiting for a login redraw their prompt with it
# (agetty --reload).
set -eu

write() {
    mkdir -p /run/rkos
    out=/run/rkos/issue
    # Its own temporary file: the watcher and a one-off run (rkos-data-disks.service) may
    # write at once.
    tmp=$(mktemp /run/rkos/issue.XXXXXX)
    chmod 0644 "$tmp"
    {
        version=$(cat /etc/rkos/version 2>/dev/null || echo unknown)
        # agetty expands \n (host name) and \l (line); everything else is kept literal
        printf 'rkos %s on \\n (\\l)\n' "$version"
        printf 'Log in as rkos (k3OS users: rkos replaces rancher).\n'
        hint=$(/usr/bin/rkos token --hint 2>/dev/null || true)
        if [ -n "$hint" ]; then
            printf '\n%s\n' "$hint" | sed -e 's/\\/\\\\/g'
        fi
        if [ -s /run/rkos/data-disks ]; then
            printf '\n*** rkos: data disks (rkos.data_disks) ***\n'
            sed -e 's/\\/\\\\/g' -e 's/^/  /' /run/rkos/data-disks
        fi
        if [ -s /run/rkos/config-errors ]; then
            printf '\n*** rkos: config errors (the node runs with the config that was valid) ***\n'
            sed -e 's/\\/\\\\/g' -e 's/^/  /' /run/rkos/config-errors
            printf 'Fix the config and run: sudo rkos config apply\n'
        fi
        printf '\n'
    } > "$tmp"
    if cmp -s "$tmp" "$out"; then
        rm -f "$tmp"
    else
        mv "$tmp" "$out"
        agetty --reload 2>/dev/null || true
    fi
}

write
if [ "${1:-}" = --watch ]; then
    # One line per address event; a DHCP lease brings a few at once, each write is cheap.
    ip -o monitor address | while read -r _; do
        write
    done
fi
