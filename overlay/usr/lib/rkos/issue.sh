#!/bin/sh
# Writes /run/rkos/issue (linked from /etc/issue.d/50-rkos.issue) so the login prompt names
# the config problems rkos-init and `rkos config apply` found (/run/rkos/config-errors).
# A node whose config is broken still boots; this is how its operator learns why.
set -eu
mkdir -p /run/rkos
out=/run/rkos/issue
tmp=$out.tmp
{
    version=$(cat /etc/rkos/version 2>/dev/null || echo unknown)
    printf 'rkos %s (\\l)\n' "$version"
    if [ -s /run/rkos/config-errors ]; then
        printf '\n*** rkos: config errors (the node runs with the config that was valid) ***\n'
        # agetty expands backslash escapes in issue files; keep the messages literal
        sed -e 's/\\/\\\\/g' -e 's/^/  /' /run/rkos/config-errors
        printf 'Fix the config and run: sudo rkos config apply\n'
    fi
    printf '\n'
} > "$tmp"
mv "$tmp" "$out"
