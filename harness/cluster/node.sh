#!/usr/bin/env bash
# One real node of the suite's cluster, made the way kind makes a node but without a container
# image: host processes in namespaces of the node's own — a network namespace on the cluster's
# bridge (address node_ip N, pods pod_cidr N), a mount namespace in which the node's own folders
# sit where node software expects them (/var/lib/kubelet, /var/lib/cni, /run/containerd,
# /run/netns, /var/log/pods, /var/log/containers, /opt/local-path-provisioner), a UTS namespace
# (its host name) and a cgroup subtree (/manacore-node-N, the kubelet's cgroupRoot). In it run
# containerd (its own root, state and socket; runc; the CNI bridge), the kubelet, kube-proxy
# (iptables) and kube-router (NetworkPolicy firewall only). Its iptables rules, routes and
# mounts live in its namespaces, so they go with them.
#   node.sh up N [ARCHIVE…]   start node-N unless it runs (idempotent; harness/cluster.sh up
#                     calls it), with the image archives imported before its kubelet starts
#   node.sh down N    power node-N off: every process of it stopped, its pods too, its
#                     namespaces and cgroups removed (also after a crash or `kill`); its disk
#                     (images, kubelet state, local-path volumes) stays for `up N`, as a
#                     rebooted machine's does (harness/cluster.sh down deletes it)
#   node.sh kill N    the node dies: every process of it SIGKILLed at once, nothing cleaned up
#                     (its Node turns NotReady; `up N` brings it back)
#   node.sh status N  exit 0 if its containerd, kubelet and kube-router run
#   node.sh images N ARCHIVE…   import image archives (`docker save` output) into its containerd
#   node.sh exec N CMD…         run CMD inside node-N (its cgroup and namespaces)
#   node.sh ctr N ARG…          containerd's ctr on node-N's containerd, namespace k8s.io
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=harness/lib.sh
source "$HERE/../lib.sh"
# shellcheck source=harness/proc.sh
source "$HERE/../proc.sh"
# shellcheck source=harness/cluster/env.sh
source "$HERE/env.sh"
BIN=$(cd "$HERE/../.." && pwd)/.tools/bin  # harness/cluster/build.sh puts every binary there
CNI_BIN=$(cd "$HERE/../.." && pwd)/.tools/cni
# the folders of the node that its mount namespace puts in place (kubelet, CNI, containerd
# shims, pod network namespaces, logs, local-path volumes)
MOUNTS=(/var/lib/kubelet /var/lib/cni /run/containerd /run/netns /var/log/pods
        /var/log/containers /opt/local-path-provisioner)

[ $# -ge 2 ] && [[ $2 =~ ^[1-9]$ ]] || { echo "usage: $0 up|down|kill|status|images|exec|ctr N …" >&2; exit 2; }
N=$2
NAME=node-$N
IP=$(node_ip "$N")
NODE=$RUN/nodes/$NAME              # its configuration, state and folders
NETNS=manacore-$NAME
CGROUP=manacore-$NAME
SOCK=$NODE/containerd.sock

cgroup_roots() {  # every cgroup v1 hierarchy (the kubelet's cgroupfs driver uses them all)
  local d
  for d in /sys/fs/cgroup/*/; do
    [ -f "$d/cgroup.procs" ] && [ ! -f "$d/cgroup.controllers" ] && echo "${d%/}"
  done
}

# Every process of the node: its daemons, shims and pods (all in its cgroup subtree).
node_pids() {
  find "/sys/fs/cgroup/pids/$CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u
}

ctr() { "$BIN/ctr" --address "$SOCK" --namespace k8s.io "$@"; }

network() {
  ip netns list | grep -qw "$NETNS" && return 0
  # `ip netns` makes /run/netns a mount point of its own: `cluster down` undoes that too
  [ -d /run/netns ] || echo /run/netns >>"$RUN/host-dirs"
  ip netns add "$NETNS"
  ip link add "mcn$N" type veth peer name eth0 netns "$NETNS"
  ip link set "mcn$N" master "$BRIDGE" up
  local in=(ip netns exec "$NETNS")
  "${in[@]}" ip link set lo up
  "${in[@]}" ip addr add "$IP/$NODE_PREFIX" dev eth0
  "${in[@]}" ip link set eth0 up
  # every address is on the link: the other nodes, the API server, and whatever a test puts on
  # the bridge as "the internet" (a TEST-NET-3 server); other nodes' pods via those nodes
  "${in[@]}" ip route add default dev eth0
  local m
  for m in $(seq 1 "$NODES"); do
    [ "$m" = "$N" ] || "${in[@]}" ip route add "$(pod_cidr "$m")" via "$(node_ip "$m")"
  done
  "${in[@]}" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
    net.bridge.bridge-nf-call-ip6tables=1
  # pods leaving the cluster's pod range go out as the node (as flannel does); pod to pod
  # keeps its address, so NetworkPolicies see the real peer
  "${in[@]}" iptables -t nat -A POSTROUTING -s "$(pod_cidr "$N")" ! -d "$CLUSTER_CIDR" \
    -m comment --comment "manacore: pods to outside the cluster" -j MASQUERADE
}

cgroups() {
  local root
  for root in $(cgroup_roots); do
    mkdir -p "$root/$CGROUP/daemons"
    if [ -f "$root/cpuset.cpus" ]; then
      local dir
      for dir in "$root/$CGROUP" "$root/$CGROUP/daemons"; do
        cat "$root/cpuset.cpus" >"$dir/cpuset.cpus"
        cat "$root/cpuset.mems" >"$dir/cpuset.mems"
      done
    fi
  done
}

# The node's mount and UTS namespaces, kept by bind mounts of their files under $RUN/ns.
namespaces() {
  [ -f "$RUN/ns/$NAME.mnt" ] && mountpoint -q "$RUN/ns/$NAME.mnt" && return 0
  mkdir -p "$RUN/ns"
  # a namespace file may only be bind-mounted on a private mount (as `ip netns` does)
  mountpoint -q "$RUN/ns" || { mount --bind "$RUN/ns" "$RUN/ns" && mount --make-private "$RUN/ns"; }
  touch "$RUN/ns/$NAME.mnt" "$RUN/ns/$NAME.uts"
  local target binds=()
  for target in "${MOUNTS[@]}"; do
    mkdir -p "$NODE/root$target"
    if [ ! -d "$target" ]; then  # a mount point on the host; `cluster down` removes it again
      mkdir -p "$target" && echo "$target" >>"$RUN/host-dirs"
    fi
    binds+=("$NODE/root$target" "$target")
  done
  # The host's mounts reach the node (slave), the node's own stay in it; and in the node, /
  # is shared, as on a systemd host (where K3s runs): mounts a container asks to receive
  # (HostToContainer, node-exporter's /) need a shared or slave source. A host whose / is
  # private (this sandbox's) gives the node a private copy, which only --make-rshared changes.
  # shellcheck disable=SC2016  # the script's own arguments
  unshare --mount="$RUN/ns/$NAME.mnt" --uts="$RUN/ns/$NAME.uts" --propagation slave \
    sh -c 'hostname "$0"; mount --make-rshared /
           while [ $# -gt 0 ]; do mount --bind "$1" "$2"; shift 2; done' "$NAME" "${binds[@]}"
}

configs() {
  mkdir -p "$NODE/cni-conf" "$NODE/containerd" "$NODE/runc"
  : >"$NODE/resolv.conf"  # the pods' upstream resolvers: none (nothing outside to ask)
  cat >"$NODE/containerd.toml" <<EOF
version = 3
root = '$NODE/containerd/root'
state = '$NODE/containerd/state'
# what a node of this suite does not use (and would write outside its folders)
disabled_plugins = ['io.containerd.internal.v1.opt', 'io.containerd.nri.v1.nri',
  'io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.blockfile', 'io.containerd.snapshotter.v1.erofs',
  'io.containerd.differ.v1.erofs', 'io.containerd.tracing.processor.v1.otlp']
[grpc]
  address = '$SOCK'
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '$PAUSE_IMAGE'
[plugins.'io.containerd.cri.v1.runtime']
  # root here lacks CAP_SYS_RESOURCE: runc may not lower a process's oom_score_adj
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = '$(command -v runc)'
      Root = '$NODE/runc'
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$CNI_BIN']
    conf_dir = '$NODE/cni-conf'
EOF
  cat >"$NODE/cni-conf/10-manacore.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "manacore", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$(pod_cidr "$N")"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
EOF
  cat >"$NODE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $NODE/resolv.conf
serializeImagePulls: false
# no registry: an image removed by garbage collection could never come back
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
EOF
  cat >"$NODE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $RUN/kube-proxy.kubeconfig}
hostnameOverride: $NAME
mode: iptables
clusterCIDR: $CLUSTER_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {localhostNodePorts: false}
# 0: leave the host's conntrack sysctls alone (they are not per network namespace)
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# `import ARCHIVE…`: images (`docker save` archives) into the node's containerd.
import() {
  local archive
  for archive in "$@"; do ctr images import --local "$archive" >/dev/null; done
}

kubelet_healthy() { ip netns exec "$NETNS" curl -fsS --max-time 2 http://127.0.0.1:10248/healthz; }
router_healthy() { ip netns exec "$NETNS" curl -fsS --max-time 2 http://127.0.0.1:20244/healthz; }
# the Node object carries this node's address (kube-router reads it from there at its start)
registered() {
  [ "$("$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" get node "$NAME" \
    -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')" = "$IP" ]
}

up() {
  if alive "$NAME.kubelet" && alive "$NAME.containerd" && alive "$NAME.kube-router"; then
    return 0
  fi
  # a node killed (`kill`), half up, or left by a crash: what it left behind goes first
  down
  # what lives in memory on a real machine does not survive its restart (/run)
  rm -rf "$NODE/root/run" "$NODE/containerd/state" "$NODE/runc"
  mkdir -p "$NODE"
  network
  cgroups
  namespaces
  configs
  start "$NAME.containerd" "$0" exec "$N" containerd --config "$NODE/containerd.toml"
  await "$NAME containerd" 30 "$NAME.containerd" ctr version
  import "$@"
  start "$NAME.kubelet" "$0" exec "$N" kubelet --config "$NODE/kubelet.yaml" \
    --kubeconfig "$RUN/$NAME.kubeconfig" --hostname-override "$NAME" --node-ip "$IP"
  start "$NAME.kube-proxy" "$0" exec "$N" kube-proxy --config "$NODE/kube-proxy.yaml"
  await "$NAME kubelet healthy" 60 "$NAME.kubelet" kubelet_healthy
  # kube-router takes the node's address from its Node object once, at its start: started
  # before the kubelet registered it, it exits ("IPv4 was enabled but no IPv4 address was found
  # on node") and no NetworkPolicy is enforced on this node
  await "$NAME registered with $IP" 60 "$NAME.kubelet" registered
  start "$NAME.kube-router" "$0" exec "$N" kube-router --kubeconfig "$RUN/kube-router.kubeconfig" \
    --hostname-override "$NAME" --run-firewall=true --run-router=false \
    --run-service-proxy=false --enable-cni=false --service-cluster-ip-range "$SERVICE_CIDR" \
    --health-port 20244 --metrics-port 0
  await "$NAME kube-router healthy" 60 "$NAME.kube-router" router_healthy
}

kill_node() {
  local pids
  pids=$(node_pids)
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
}

down() {
  local name _ root
  for name in kube-router kube-proxy kubelet; do stop "$NAME.$name" 10; done
  # containerd, its shims and the pods: all at once, as when the node's power goes (a process
  # in an uninterruptible sleep dies only when its I/O returns: seconds on a loaded machine)
  for _ in $(seq 40); do
    node_pids | grep -q . || break
    kill_node; sleep 0.5
  done
  if node_pids | grep -q .; then die "$NAME: processes left: $(node_pids | tr '\n' ' ')"; fi
  rm -f "$RUN/$NAME.containerd.pid"
  # the namespaces: their mounts and iptables rules go with them
  for name in mnt uts; do
    if mountpoint -q "$RUN/ns/$NAME.$name" 2>/dev/null; then umount "$RUN/ns/$NAME.$name"; fi
    rm -f "$RUN/ns/$NAME.$name"
  done
  if ip netns list | grep -qw "$NETNS"; then ip netns delete "$NETNS"; fi
  if ip link show "mcn$N" >/dev/null 2>&1; then ip link delete "mcn$N"; fi
  # the cgroups, deepest first; the kernel refuses (EBUSY) a cgroup whose last task is still
  # being torn down, for a moment after cgroup.procs is empty: tried again for up to 10 s
  for root in $(cgroup_roots); do
    for _ in $(seq 20); do
      [ -d "$root/$CGROUP" ] || break
      find "$root/$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || sleep 0.5
    done
    [ ! -d "$root/$CGROUP" ] || die "$NAME: cgroup $root/$CGROUP could not be removed" \
      "(tasks: $(find "$root/$CGROUP" -name tasks -exec cat {} + | tr '\n' ' '))"
  done
}

cmd=$1; shift 2
case $cmd in
  up) up "$@" ;;
  down) down ;;
  kill) kill_node ;;
  status) alive "$NAME.containerd" && alive "$NAME.kubelet" && alive "$NAME.kube-router" ;;
  images) import "$@" ;;
  ctr) ctr "$@" ;;
  exec)
    for root in $(cgroup_roots); do echo $$ >"$root/$CGROUP/daemons/cgroup.procs"; done
    exec nsenter --net="/run/netns/$NETNS" --mount="$RUN/ns/$NAME.mnt" --uts="$RUN/ns/$NAME.uts" \
      -- env PATH="$BIN:$PATH" "$@" ;;
  *) echo "usage: $0 up|down|kill|status|images|exec|ctr N …" >&2; exit 2 ;;
esac
