#!/bin/bash
# k3s STAND-IN for rkos boot tests. It is not k3s and runs no Kubernetes. As k3s it records
# its arguments, environment and a copy of /etc/rancher/k3s/config.yaml into
# /run/k3s-standin/ and then stays up, so tests can check how k3s.service started it.
# As a server it also writes the two files a k3s server writes that the node's tools read:
# the token agents join with (/var/lib/rancher/k3s/server/node-token, root only) and the
# admin kubeconfig (/etc/rancher/k3s/k3s.yaml, with the mode and group of its config).
# Both are stand-ins: the token's CA hash is all zeros (there is no CA) and the kubeconfig
# names no API server that answers. A server listens on TCP 6443 (each connection gets one
# line saying it is the stand-in, through systemd-socket-activate, which the image has), so a
# test shows agents reaching it; an agent tries its server_url's address and port for up to
# 5 minutes and records the outcome in /run/k3s-standin/server-reach ("reached HOST:PORT" or
# "unreachable HOST:PORT").
# Called as kubectl, crictl or ctr it says it is a stand-in. Images built with it are named
# *-standin.iso and carry RKOS_K3S=stand-in in /etc/os-release.
name=$(basename "$0")
# kubectl, as k3s's, reads the admin kubeconfig first: a user who may not read it is
# refused with k3s's own words.
kubeconfig_readable() {
    local kc=${KUBECONFIG:-/etc/rancher/k3s/k3s.yaml}
    if [ -e "$kc" ] && [ ! -r "$kc" ]; then
        echo "WARN Unable to read $kc, please start server with --write-kubeconfig-mode or --write-kubeconfig-group to modify kube config permissions" >&2
        echo "error: error loading config file \"$kc\": open $kc: permission denied" >&2
        exit 1
    fi
}
case "$name" in
    kubectl|crictl|ctr)
        [ "$name" != kubectl ] || kubeconfig_readable
        echo "$name: k3s stand-in (test image): no Kubernetes here"
        exit 0 ;;
esac
case "${1:-}" in
    --version|-v|version)
        echo "k3s stand-in (rkos test image)"
        exit 0 ;;
    kubectl|crictl|ctr)
        [ "$1" != kubectl ] || kubeconfig_readable
        echo "$1: k3s stand-in (test image): no Kubernetes here"
        exit 0 ;;
esac
dir=/run/k3s-standin
mkdir -p "$dir"
chmod 0700 "$dir"
printf '%s\n' "$@" > "$dir/argv"
env | sort > "$dir/environ"
if [ -f /etc/rancher/k3s/config.yaml ]; then
    cp /etc/rancher/k3s/config.yaml "$dir/config.yaml"
fi

# One value of k3s's config file, unquoted.
conf_value() {
    sed -n "s/^$1: *//p" /etc/rancher/k3s/config.yaml 2>/dev/null | head -n1 \
        | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/"
}
if [ "${1:-}" = server ]; then
    tokdir=/var/lib/rancher/k3s/server
    mkdir -p "$tokdir"
    chmod 0700 "$tokdir"
    secret=$(conf_value token)
    # No token configured: keep the one written before, else make one, as k3s does.
    if [ -z "$secret" ] && [ -s "$tokdir/node-token" ]; then
        secret=$(sed -n 's/^K10[0-9a-f]*::server://p' "$tokdir/node-token")
    fi
    [ -n "$secret" ] || secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    case "$secret" in
        K10*) token=$secret ;;
        *) token="K10$(printf '%064d' 0)::server:$secret" ;;
    esac
    (umask 077 && printf '%s\n' "$token" > "$tokdir/node-token")
    mkdir -p /etc/rancher/k3s
    kc=/etc/rancher/k3s/k3s.yaml
    cat > "$kc.new" <<'EOK'
# k3s STAND-IN kubeconfig (rkos test image): no API server answers at this address.
apiVersion: v1
kind: Config
clusters:
- cluster:
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    token: stand-in
EOK
    chmod "$(conf_value write-kubeconfig-mode | grep -E '^0?[0-7]{3}$' || echo 0600)" "$kc.new"
    group=$(conf_value write-kubeconfig-group)
    [ -z "$group" ] || chgrp "$group" "$kc.new"
    mv "$kc.new" "$kc"
fi
if [ "${1:-}" = agent ]; then
    url=$(conf_value server)
    hostport=${url#*://}
    hostport=${hostport%%/*}
    host=${hostport%:*}
    port=${hostport##*:}
    if [ -n "$url" ]; then
        result="unreachable $host:$port"
        for _ in $(seq 60); do
            if timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then
                result="reached $host:$port"
                break
            fi
            sleep 5
        done
        echo "$result" > "$dir/server-reach"
        echo "k3s stand-in: server $result"
    fi
fi
echo "k3s stand-in: started as '$*' (pid $$); recorded in $dir"
if [ "${1:-}" = server ] && command -v systemd-socket-activate >/dev/null; then
    exec systemd-socket-activate -l 6443 -a --inetd \
        /bin/echo "k3s stand-in (rkos test image): no Kubernetes here"
fi
exec sleep infinity
