#!/usr/bin/env bash
# Simulated cluster nodes on one machine for the multi-node tests (tests/test_multinode.py).
#
#   tests/multinode/nodes.sh start STATE_DIR [N]   N nodes (2 or 3, default 3): nodeA, nodeB, nodeC
#   tests/multinode/nodes.sh kill  STATE_DIR NODE  end every process of NODE (the node is lost)
#   tests/multinode/nodes.sh revive STATE_DIR NODE start NODE's sshd again (after kill)
#   tests/multinode/nodes.sh stop  STATE_DIR       end every process of every node, delete the namespaces
#
# Each node is a network namespace with its own address (10.77.0.1, .2, .3 on eth0), joined by a
# bridge that lives in a namespace of its own, and an sshd started under `unshare --uts --mount`
# with the node's hostname and a bind-mounted copy of /etc/hosts that names every node. Everything
# started through that sshd (MPICH's ssh launcher, Dask workers) sees that hostname; the file
# system is shared, like a cluster's shared home. Traffic stays between these namespaces' own
# addresses: nothing is ever sent to an address outside them, and the host's own network files
# are never changed. Needs root, iproute2, util-linux and openssh (apt-installed when missing).
#
# STATE_DIR receives: ssh (a wrapper: `STATE_DIR/ssh HOST CMD` with the test key), hosts (the
# hosts file every node sees), nodes (lines "NAME ADDRESS NAMESPACE"), hostfile (one line per
# node, for HYDRA_HOST_FILE), and the sshd configuration, keys and logs.
# PYTHON (default python3) runs the reachability probe. Recipe: /work/shared/notes/multinode.md.
set -euo pipefail

ACTION=${1:?usage: nodes.sh start|kill|stop STATE_DIR [N|NODE]}
P=${2:?usage: nodes.sh start|kill|stop STATE_DIR [N|NODE]}
SUBNET=10.77.0

log() { echo "[nodes] $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root: network namespaces, sshd and bind mounts need it"
mkdir -p "$P"
P=$(cd "$P" && pwd)
# Namespace names carry a tag of the state dir, so that two test sessions never meet.
TAG=$(printf %s "$P" | md5sum | cut -c1-6)
BR=hpwf-$TAG-br

ns_of() { echo "hpwf-$TAG-$1"; }  # ns_of nodeA -> hpwf-TAG-nodeA
# Each session's tag is recorded with the pid of its owner (the test process that ran `start`),
# so that a later `start` tears down the nodes of a session that was killed before its `stop`.
OWNERS=/run/hpwf-nodes

install_if_missing() {
    local want=()
    command -v ip >/dev/null || want+=(iproute2)
    command -v unshare >/dev/null || want+=(util-linux)
    [ -x /usr/sbin/sshd ] || want+=(openssh-server)
    command -v ssh >/dev/null || want+=(openssh-client)
    command -v ssh-keygen >/dev/null || want+=(openssh-client)
    [ ${#want[@]} = 0 ] && return
    log "installing ${want[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed; cannot install ${want[*]}"
    apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null \
        || die "apt-get install ${want[*]} failed"
}

end_processes_of() {  # end_processes_of NAMESPACE: TERM, then KILL what is left
    local ns=$1 pids i
    ip netns list 2>/dev/null | grep -qw "^$ns" || return 0
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    kill -TERM $pids 2>/dev/null || true
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] || return 0
        sleep 0.3
    done
    kill -KILL $pids 2>/dev/null || true
    sleep 0.3
}

stop() {  # stop [TAG]: every node of this session (or of the session TAG)
    local tag=${1:-$TAG} ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^hpwf-$tag-" || true); do
        end_processes_of "$ns"
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^hpwf-$tag-" || true); do
        ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
    done
    rm -f "$OWNERS/$tag"
}

sweep_orphans() {  # the nodes of sessions whose owner is gone (killed before they could stop)
    local f pid
    for f in "$OWNERS"/*; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null || echo 0)
        if [ "$(basename "$f")" != "$TAG" ] && ! kill -0 "$pid" 2>/dev/null; then
            log "removing the nodes of an ended session (tag $(basename "$f"), owner pid $pid)"
            stop "$(basename "$f")"
        fi
    done
}

start_sshd() {  # start_sshd NODE: its sshd, with its hostname and hosts file, in the background
    local name=$1
    setsid ip netns exec "$(ns_of "$name")" unshare --uts --mount sh -c \
        "mount --bind '$P/hosts' /etc/hosts && hostname $name && exec /usr/sbin/sshd -D -e -f '$P/sshd_config.$name'" \
        >>"$P/sshd.$name.log" 2>&1 </dev/null &
    echo $! >"$P/sshd.$name.pid"
}

wait_for_ssh() {  # wait_for_ssh NODE ADDRESS: its sshd answers from nodeA with the right hostname
    local name=$1 addr=$2 first_ns ok= seen
    first_ns=$(ns_of nodeA)
    for _ in $(seq 1 50); do
        if probe "$first_ns" "$addr" 22; then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || die "sshd on $name ($addr) does not answer from nodeA: $(tail -5 "$P/sshd.$name.log")"
    seen=$(ip netns exec "$first_ns" "$P/ssh" "$addr" hostname) \
        || die "ssh from nodeA to $name ($addr) failed: $(tail -5 "$P/sshd.$name.log")"
    [ "$seen" = "$name" ] || die "$name answers with hostname $seen"
}

probe() {  # probe FROM_NS ADDRESS PORT: a TCP connection from inside FROM_NS succeeds
    ip netns exec "$1" "${PYTHON:-python3}" - "$2" "$3" <<'PY' 2>/dev/null
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
PY
}

start() {
    local n=${1:-3} names=(nodeA nodeB nodeC) i name ns addr
    case "$n" in 2|3) ;; *) die "N must be 2 or 3, not $n" ;; esac
    install_if_missing
    stop  # leftovers of an earlier session with this state dir
    sweep_orphans
    mkdir -p "$OWNERS"
    echo "${HPWF_NODES_OWNER:-$PPID}" >"$OWNERS/$TAG"
    trap 'log "start failed; tearing down"; stop' ERR

    ip netns add "$BR" || die "cannot create a network namespace (ip netns add): this machine or container does not allow it (needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    ip -n "$BR" link add br0 type bridge || die "cannot create a bridge inside a namespace (the bridge module or CAP_NET_ADMIN is missing)"
    ip -n "$BR" link set br0 up
    ip -n "$BR" link set lo up

    cp /etc/hosts "$P/hosts"
    : >"$P/nodes"
    : >"$P/hostfile"
    for i in $(seq 0 $((n - 1))); do
        name=${names[$i]}
        echo "$SUBNET.$((i + 1)) $name" >>"$P/hosts"
        echo "$name $SUBNET.$((i + 1)) $(ns_of "$name")" >>"$P/nodes"
        echo "$name" >>"$P/hostfile"
    done

    for i in $(seq 0 $((n - 1))); do
        name=${names[$i]}
        ns=$(ns_of "$name")
        addr=$SUBNET.$((i + 1))
        ip netns add "$ns"
        # the veth pair is made inside the bridge's namespace: no name ever appears on the host
        ip -n "$BR" link add "v$name" type veth peer name eth0 netns "$ns"
        ip -n "$BR" link set "v$name" master br0 up
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
    done

    rm -f "$P/id_test" "$P/id_test.pub" "$P/host_key" "$P/host_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C hpwf-test -f "$P/id_test"
    ssh-keygen -q -t ed25519 -N '' -C hpwf-test-host -f "$P/host_key"
    cp "$P/id_test.pub" "$P/authorized_keys"
    chmod 600 "$P/id_test" "$P/host_key" "$P/authorized_keys"
    cat >"$P/ssh" <<SSH
#!/bin/sh
# ssh with the simulated nodes' test key (MPICH: -launcher ssh -launcher-exec THIS)
exec ssh -i "$P/id_test" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \\
    -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=10 "\$@"
SSH
    chmod 755 "$P/ssh"
    mkdir -p /run/sshd
    chmod 0755 /run/sshd

    for i in $(seq 0 $((n - 1))); do
        name=${names[$i]}
        cat >"$P/sshd_config.$name" <<CONF
ListenAddress $SUBNET.$((i + 1))
Port 22
HostKey $P/host_key
AuthorizedKeysFile $P/authorized_keys
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PidFile none
PrintMotd no
MaxStartups 200
MaxSessions 200
CONF
        start_sshd "$name"
    done

    for i in $(seq 0 $((n - 1))); do
        wait_for_ssh "${names[$i]}" "$SUBNET.$((i + 1))"
    done
    trap - ERR
    log "$n nodes up: $(awk '{printf "%s=%s ", $1, $2}' "$P/nodes")(state in $P)"
}

case "$ACTION" in
    start) start "${3:-3}" ;;
    revive)  # a killed node comes back: its sshd again (nothing else it ran)
        node=${3:?usage: nodes.sh revive STATE_DIR NODE}
        address=$(awk -v n="$node" '$1 == n {print $2}' "$P/nodes")
        [ -n "$address" ] || die "no node $node in $P/nodes"
        start_sshd "$node"
        wait_for_ssh "$node" "$address"
        log "$node is back"
        ;;
    kill)
        node=${3:?usage: nodes.sh kill STATE_DIR NODE}
        pids=$(ip netns pids "$(ns_of "$node")" 2>/dev/null || true)
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
        log "killed every process of $node"
        ;;
    stop) stop ;;
    *) die "unknown action $ACTION (start, kill, stop)" ;;
esac
