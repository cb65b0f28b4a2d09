#!/usr/bin/env bash
# The Kubernetes cluster the test suite owns: a real control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler), real nodes where pods really run (harness/cluster/
# node.sh: containerd, runc, CNI bridge, kubelet, kube-proxy, kube-router for NetworkPolicies;
# MANACORE_NODES of them, default 2), CoreDNS as the cluster DNS, K3s' local-path-provisioner
# for claims, and three nodes simulated by kwok for what only scheduling needs (tainted
# manacore.dev/simulated: only pods that tolerate it go there). The API server listens on this
# host's address on the nodes' bridge (harness/cluster/env.sh), etcd on loopback;
# certificates, kubeconfigs, logs and the nodes' state live in $RUN. Binaries:
# harness/cluster/build.sh; the nodes' images come from the suite's Docker engine (scripts/engine,
# started if it does not run).
#   harness/cluster.sh up              start what does not run (idempotent); last line: the kubeconfig
#   harness/cluster.sh down            stop what this script started, delete the cluster's data (etcd,
#                                      the nodes' disks) and undo its host changes (bridge, iptables
#                                      rule, sysctls, cgroups, namespaces, mount points)
#   harness/cluster.sh status          print the kubeconfig if the cluster runs, exit 1 if not
#   harness/cluster.sh images REF…     load images of the suite's Docker engine into every real node
#   harness/cluster.sh node up|down|kill|status|exec N …   one real node (harness/cluster/node.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=harness/lib.sh
source "$HERE/lib.sh"
# shellcheck source=harness/proc.sh
source "$HERE/proc.sh"
# shellcheck source=harness/cluster/env.sh
source "$HERE/cluster/env.sh"
BIN=$(cd "$HERE/.." && pwd)/.tools/bin
NODE_SH=$HERE/cluster/node.sh
# control-plane processes, started in this order and stopped in the reverse one
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok local-path-provisioner)
FORWARD_RULE=(FORWARD -i "$BRIDGE" -o "$BRIDGE" -m comment --comment manacore-cluster -j ACCEPT)
BASE_IMAGES=("$PAUSE_IMAGE" "$HELPER_IMAGE" "$COREDNS_IMAGE")

# `ready`: the API server answers /readyz (as the admin).
ready() {
  curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$APISERVER/readyz" >/dev/null 2>&1
}

running() {
  local name n
  for name in "${COMPONENTS[@]}"; do alive "$name" || return 1; done
  for n in $(seq 1 "$NODES"); do "$NODE_SH" status "$n" || return 1; done
  ready
}

# `listening PORT`: something accepts connections on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# `cert NAME SUBJECT EXTENSIONS`: an EC key and a certificate signed by the cluster's CA.
cert() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null
  openssl req -new -key "$PKI/$1.key" -subj "$2" 2>/dev/null \
    | openssl x509 -req -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
        -extfile <(printf '%b\n' "$3") -out "$PKI/$1.crt" 2>/dev/null
}

# The cluster's keys and certificates, made once per $RUN: a CA; the API server's serving
# certificate; the service-account signing key pair; a client certificate for each component:
# the controller manager and scheduler under the names the default RBAC rules grant, each real
# node's kubelet as system:node:NAME (the Node authorizer and NodeRestriction hold it to its own
# node), kube-proxy as system:kube-proxy, the API server towards the kubelets; kwok (it plays
# kubelets), kube-router and local-path-provisioner (harness controllers, run on the host as K3s
# runs them in its own process) and the admin whose kubeconfig `up` prints: group system:masters.
pki() {
  [ -f "$PKI/admin.crt" ] && [ -f "$PKI/node-$NODES.crt" ] && return 0
  rm -rf "$PKI" && mkdir -p "$PKI"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=manacore-test-cluster-ca" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt" 2>/dev/null
  local usage='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment'
  cert apiserver "/CN=kube-apiserver" "$usage\nextendedKeyUsage=serverAuth\nsubjectAltName=\
IP:$HOST_IP,IP:${SERVICE_CIDR%.0/*}.1,DNS:kubernetes,DNS:kubernetes.default,\
DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  local client="$usage\nextendedKeyUsage=clientAuth" n
  cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  cert kube-scheduler "/CN=system:kube-scheduler" "$client"
  cert kube-proxy "/CN=system:kube-proxy" "$client"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  for n in kwok kube-router local-path-provisioner; do
    cert "$n" "/O=system:masters/CN=$n" "$client"
  done
  for n in $(seq 1 "$NODES"); do
    cert "node-$n" "/O=system:nodes/CN=system:node:node-$n" "$client"
  done
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  cert admin "/O=system:masters/CN=manacore-admin" "$client"  # last: it marks the set complete
  chmod 600 "$PKI"/*.key
}

# `kubeconfig NAME`: $RUN/NAME.kubeconfig, logging in with NAME's certificate (all embedded).
kubeconfig() {
  local file=$RUN/$1.kubeconfig
  [ -f "$file" ] && [ "$file" -nt "$PKI/admin.crt" ] && return 0
  (umask 077 && cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: manacore-test
  cluster:
    server: $APISERVER
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$1.crt")
    client-key-data: $(base64 -w0 "$PKI/$1.key")
contexts:
- name: manacore-test
  context: {cluster: manacore-test, user: $1}
current-context: manacore-test
EOF
  )
}

kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# The nodes' network: a bridge with this host's address, and a FORWARD rule letting its frames
# pass (the Docker engine sets the FORWARD policy to DROP, and bridged frames traverse it).
network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$HOST_IP/$NODE_PREFIX" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  iptables -C "${FORWARD_RULE[@]}" 2>/dev/null || iptables -I "${FORWARD_RULE[@]}"
}

# `archive REF…`: `docker save` of the images, once per set of image ids; prints its path.
# An archive is ~3 GB and a new image set makes a new one: those unused for a day go.
archive() {
  local ids key out
  ids=$(docker image inspect --format '{{.Id}}' "$@") || die "not in the engine: $*"
  key=$(printf '%s\n' "$@" "$ids" | sha256sum | cut -c1-16)
  out=$CACHE/node-images/$key.tar
  if [ ! -s "$out" ]; then
    mkdir -p "$CACHE/node-images"
    docker save -o "$out.tmp" "$@" && mv "$out.tmp" "$out"
  fi
  touch "$out"
  find "$CACHE/node-images" -name '*.tar' -mmin +1440 -delete
  echo "$out"
}

# `images REF…`: the images of the suite's engine loaded into every real node (in parallel).
images() {
  [ $# -gt 0 ] || die "usage: $0 images REF…"
  export DOCKER_HOST; DOCKER_HOST=$("$HERE/engine.sh" status) || die "the suite's engine does not run"
  local tar n pids=()
  tar=$(timed "docker save ($# images)" archive "$@")
  for n in $(seq 1 "$NODES"); do "$NODE_SH" images "$n" "$tar" & pids+=($!); done
  for n in "${pids[@]}"; do wait "$n" || die "loading images into a node failed"; done
  log "images: $# loaded into $NODES nodes"
}

# The Node objects of the real nodes, made before their kubelets register: each gets its pod
# range (the routes between the nodes are made for these ranges) and the labels a node has.
node_objects() {
  local n
  for n in $(seq 1 "$NODES"); do cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: node-$n
  labels: {kubernetes.io/hostname: node-$n, kubernetes.io/os: linux, topology.kubernetes.io/zone: zone-$n}
spec:
  podCIDR: $(pod_cidr "$n")
  podCIDRs: [$(pod_cidr "$n")]
EOF
  done
}

up() {
  if running; then
    log "cluster: reused"
    echo "$KUBECONFIG_FILE"; return
  fi
  timed "cluster binaries" "$HERE/cluster/build.sh" >/dev/null
  timed "host packages" host_packages iptables ipset conntrack runc
  export DOCKER_HOST; DOCKER_HOST=$("$HERE/engine.sh" up | tail -1)
  timed "cluster images" "$HERE/../.venv/bin/python" "$HERE/images.py" - "${BASE_IMAGES[@]}"
  mkdir -p "$RUN" "$DATA" "$LOGS"
  network
  timed "certificates" pki
  local name n
  for name in admin kube-controller-manager kube-scheduler kube-proxy kwok kube-router \
      local-path-provisioner $(seq -f 'node-%g' 1 "$NODES"); do kubeconfig "$name"; done
  local port
  for port in "${ETCD_CLIENT##*:}" "${ETCD_PEER##*:}"; do
    if listening "$port" && ! alive etcd; then
      die "port $port is taken by another program: the cluster needs it"
    fi
  done
  local start=$SECONDS
  # --unsafe-no-fsync: the data is thrown away by `down`, and fsync is the slow part of etcd
  start etcd "$BIN/etcd" --name manacore --data-dir "$DATA/etcd" \
    --listen-client-urls "$ETCD_CLIENT" --advertise-client-urls "$ETCD_CLIENT" \
    --listen-peer-urls "$ETCD_PEER" --initial-advertise-peer-urls "$ETCD_PEER" \
    --initial-cluster "manacore=$ETCD_PEER" --unsafe-no-fsync --log-level warn
  await "etcd healthy" 30 etcd curl -fsS "$ETCD_CLIENT/health"
  # Pod Security admission and server-side field validation are on by default;
  # --allow-privileged lets Pod Security (not this switch) decide about privileged pods;
  # the kubelets are reached at their InternalIP (their host names resolve to nothing here)
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "$ETCD_CLIENT" \
    --bind-address "$HOST_IP" --advertise-address "$HOST_IP" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer "$SA_ISSUER" --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
  await "kube-apiserver /readyz" 120 kube-apiserver ready
  log "cluster: API server ready after $((SECONDS - start)) s"
  # one instance each: no leader election (a restarted one would wait for its old lease);
  # --secure-port 0: they serve no port (nothing scrapes them)
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$RUN/kube-controller-manager.kubeconfig" \
    --secure-port 0 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --kube-api-qps 100 --kube-api-burst 200
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$RUN/kube-scheduler.kubeconfig" \
    --secure-port 0 --leader-elect=false --kube-api-qps 100 --kube-api-burst 200
  # KWOK_WORKDIR: kwok would also read a ~/.kwok/kwok.yaml
  start kwok env KWOK_WORKDIR="$RUN/kwok" "$BIN/kwok" --kubeconfig "$RUN/kwok.kubeconfig" \
    --config "$HERE/cluster/kwok.yaml"
  { node_objects; cat "$HERE/cluster/bootstrap.yaml"; } | kubectl apply -f - >/dev/null
  sed "s|{{COREDNS_IMAGE}}|$COREDNS_IMAGE|; s|{{HELPER_IMAGE}}|$HELPER_IMAGE|" \
    "$HERE/cluster/addons.yaml" | kubectl apply -f - >/dev/null
  start local-path-provisioner "$BIN/local-path-provisioner" start \
    --kubeconfig "$RUN/local-path-provisioner.kubeconfig" --namespace kube-system \
    --configmap-name local-path-config --service-account-name local-path-provisioner \
    --helper-image "$HELPER_IMAGE" --provisioner-name rancher.io/local-path
  # the kubelets change host sysctls: `down` puts them back
  [ -f "$RUN/sysctl.orig" ] || sysctl "${KERNEL_TUNABLES[@]}" >"$RUN/sysctl.orig"
  local tar; tar=$(timed "docker save (base images)" archive "${BASE_IMAGES[@]}")
  for n in $(seq 1 "$NODES"); do timed "node-$n" "$NODE_SH" up "$n" "$tar"; done
  await "nodes Ready" 120 kube-controller-manager kubectl wait --for=condition=Ready \
    $(seq -f 'node/node-%g' 1 "$NODES") node/kwok-1 node/kwok-2 node/kwok-3 --timeout=1s
  await "CoreDNS Ready" 180 kube-scheduler kubectl -n kube-system rollout status \
    deployment/coredns --timeout=1s
  await "the default ServiceAccount" 120 kube-controller-manager \
    kubectl get serviceaccount default --namespace default
  for name in kube-scheduler local-path-provisioner; do
    alive "$name" || die "$name exited (log: $LOGS/$name.log)"
  done
  log "cluster: up after $((SECONDS - start)) s (logs: $LOGS)"
  echo "$KUBECONFIG_FILE"
}

# Also after a crash: every node's processes and namespaces, the control plane, the data, the
# bridge and its rule, the kubelets' sysctls, the mount points made on the host.
down() {
  local i n
  for n in $(seq 1 9); do
    if [ -d "$RUN/nodes/node-$n" ] || ip netns list | grep -qw "manacore-node-$n"; then
      "$NODE_SH" down "$n"
    fi
  done
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[i]}"; done
  rm -rf "$DATA" "$RUN/nodes"  # etcd's data, the nodes' disks
  if [ -f "$RUN/sysctl.orig" ]; then
    sed 's/ = /=/' "$RUN/sysctl.orig" | xargs sysctl -qw && rm "$RUN/sysctl.orig"
  fi
  while iptables -C "${FORWARD_RULE[@]}" 2>/dev/null; do iptables -D "${FORWARD_RULE[@]}"; done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE"; fi
  if mountpoint -q "$RUN/ns" 2>/dev/null; then umount "$RUN/ns"; fi
  if [ -f "$RUN/host-dirs" ]; then
    tac "$RUN/host-dirs" | while read -r dir; do
      if [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
        if mountpoint -q "$dir"; then umount "$dir"; fi
        rmdir "$dir" 2>/dev/null || true
      fi
    done
    rm "$RUN/host-dirs"
  fi
  log "cluster: stopped, data deleted"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) running && echo "$KUBECONFIG_FILE" ;;
  images) shift; images "$@" ;;
  node) shift; exec "$NODE_SH" "$@" ;;
  *) echo "usage: $0 up|down|status|images REF…|node up|down|kill|status|images|exec|ctr N …" >&2; exit 2 ;;
esac
