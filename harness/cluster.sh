#!/usr/bin/env bash
# The Kubernetes cluster the test suite owns: a real control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) with three nodes simulated by kwok (pods are
# scheduled, become Ready, Jobs complete; nothing runs) and pvsim binding the default
# StorageClass's claims. Everything listens on loopback only, on ports of its own; certificates,
# kubeconfigs, logs and data live in $RUN. Binaries: harness/cluster/build.sh.
#   harness/cluster.sh up      start what does not run (idempotent); last line: the kubeconfig
#   harness/cluster.sh down    stop the processes this script started; delete the cluster's data
#   harness/cluster.sh status  print the kubeconfig if the cluster runs, exit 1 if not
set -euo pipefail
# shellcheck source=harness/lib.sh
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

RUN=/run/manacore-cluster            # pidfiles, pki/, *.kubeconfig, logs/ (kept by `down`)
DATA=$RUN/data                       # etcd's data and the volumes' folders (deleted by `down`)
PKI=$RUN/pki
LOGS=$RUN/logs
KUBECONFIG_FILE=$RUN/admin.kubeconfig
APISERVER_PORT=16443
APISERVER=https://127.0.0.1:$APISERVER_PORT
ETCD_CLIENT=http://127.0.0.1:12379   # loopback only, so plain HTTP
ETCD_PEER=http://127.0.0.1:12380
SERVICE_CIDR=10.96.0.0/16            # its first address is the `kubernetes` Service's
SA_ISSUER=https://kubernetes.default.svc.cluster.local
# started in this order, stopped in the reverse one
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok pvsim)

# `alive NAME`: NAME's pidfile names a process running NAME's binary (not a recycled pid).
alive() {
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) && [ -n "$pid" ] || return 1
  case $(readlink "/proc/$pid/exe" 2>/dev/null) in */"$1"|*/"$1"-*) return 0;; esac
  return 1
}

# `ready`: the API server answers /readyz (as the admin).
ready() {
  curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$APISERVER/readyz" >/dev/null 2>&1
}

running() {
  local name
  for name in "${COMPONENTS[@]}"; do alive "$name" || return 1; done
  ready
}

# `listening PORT`: something accepts connections on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# `start NAME ARG…`: runs .tools/bin/NAME in a session of its own, logging into logs/NAME.log
# (the previous run's log is kept as NAME.log.1), unless it runs.
start() {
  local name=$1; shift
  alive "$name" && return 0
  [ -f "$LOGS/$name.log" ] && mv "$LOGS/$name.log" "$LOGS/$name.log.1"
  # not a process group leader, so setsid execs in place: $! is the program's own pid
  setsid "$BIN/$name" "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

# `await WHAT SECONDS NAME CMD…`: polls CMD until it succeeds; dies with NAME's log if NAME
# exits or SECONDS pass.
await() {
  local what=$1 seconds=$2 name=$3 _; shift 3
  for _ in $(seq 1 $((seconds * 2))); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$name" || { tail -20 "$LOGS/$name.log" >&2; die "$name exited (log: $LOGS/$name.log)"; }
    sleep 0.5
  done
  tail -20 "$LOGS/$name.log" >&2
  die "$what: not within $seconds s (log: $LOGS/$name.log)"
}

# `cert NAME SUBJECT EXTENSIONS`: an EC key and a certificate signed by the cluster's CA.
cert() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null
  openssl req -new -key "$PKI/$1.key" -subj "$2" 2>/dev/null \
    | openssl x509 -req -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
        -extfile <(printf '%b\n' "$3") -out "$PKI/$1.crt" 2>/dev/null
}

# The cluster's keys and certificates, made once per data folder: a CA; the API server's
# serving certificate; the service-account signing key pair; a client certificate for each
# component (the controller manager and scheduler under the names the default RBAC rules
# grant; kwok and pvsim play the kubelets and the storage driver, so they, like the admin whose
# kubeconfig `up` prints, are in group system:masters).
pki() {
  [ -f "$PKI/admin.crt" ] && return 0
  rm -rf "$PKI" && mkdir -p "$PKI"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=manacore-test-cluster-ca" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt" 2>/dev/null
  local usage='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment'
  cert apiserver "/CN=kube-apiserver" "$usage\nextendedKeyUsage=serverAuth\nsubjectAltName=\
IP:127.0.0.1,IP:${SERVICE_CIDR%.0/*}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  local client="$usage\nextendedKeyUsage=clientAuth"
  cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  cert kube-scheduler "/CN=system:kube-scheduler" "$client"
  cert kwok "/O=system:masters/CN=kwok" "$client"
  cert pvsim "/O=system:masters/CN=pvsim" "$client"
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

up() {
  if running; then
    log "cluster: reused"
    echo "$KUBECONFIG_FILE"; return
  fi
  BIN=$(timed "cluster binaries" "$HERE/cluster/build.sh")
  mkdir -p "$RUN" "$DATA" "$LOGS"
  timed "certificates" pki
  local name
  for name in admin kube-controller-manager kube-scheduler kwok pvsim; do kubeconfig "$name"; done
  local port
  for port in 12379 12380 "$APISERVER_PORT"; do
    if listening "$port" && ! alive etcd && ! alive kube-apiserver; then
      die "port $port is taken by another program: the cluster needs it"
    fi
  done
  local start=$SECONDS
  # --unsafe-no-fsync: the data is thrown away by `down`, and fsync is the slow part of etcd
  start etcd --name manacore --data-dir "$DATA/etcd" --listen-client-urls "$ETCD_CLIENT" \
    --advertise-client-urls "$ETCD_CLIENT" --listen-peer-urls "$ETCD_PEER" \
    --initial-advertise-peer-urls "$ETCD_PEER" --initial-cluster "manacore=$ETCD_PEER" \
    --unsafe-no-fsync --log-level warn
  await "etcd healthy" 30 etcd curl -fsS "$ETCD_CLIENT/health"
  # Pod Security admission and server-side field validation are on by default;
  # --allow-privileged lets Pod Security (not this switch) decide about privileged pods;
  # --endpoint-reconciler-type none: the `kubernetes` Service gets no endpoints (they may not be
  # loopback addresses, and an address elsewhere would be a lie nothing can reach)
  start kube-apiserver --etcd-servers "$ETCD_CLIENT" --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
    --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --service-account-issuer "$SA_ISSUER" --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
  await "kube-apiserver /readyz" 120 kube-apiserver ready
  log "cluster: API server ready after $((SECONDS - start)) s"
  # one instance each: no leader election (a restarted one would wait for its old lease);
  # --secure-port 0: they serve no port (nothing scrapes them)
  start kube-controller-manager --kubeconfig "$RUN/kube-controller-manager.kubeconfig" \
    --secure-port 0 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --kube-api-qps 100 --kube-api-burst 200
  start kube-scheduler --kubeconfig "$RUN/kube-scheduler.kubeconfig" --secure-port 0 \
    --leader-elect=false --kube-api-qps 100 --kube-api-burst 200
  # KWOK_WORKDIR: kwok would also read a ~/.kwok/kwok.yaml
  KWOK_WORKDIR=$RUN/kwok start kwok --kubeconfig "$RUN/kwok.kubeconfig" \
    --config "$HERE/cluster/kwok.yaml"
  start pvsim --kubeconfig "$RUN/pvsim.kubeconfig" --root "$DATA/volumes"
  kubectl apply -f "$HERE/cluster/bootstrap.yaml" >/dev/null
  await "3 nodes Ready" 120 kwok \
    kubectl wait --for=condition=Ready node/node-1 node/node-2 node/node-3 --timeout=1s
  await "the default ServiceAccount" 120 kube-controller-manager \
    kubectl get serviceaccount default --namespace default
  for name in kube-scheduler pvsim; do alive "$name" || die "$name exited (log: $LOGS/$name.log)"; done
  log "cluster: up after $((SECONDS - start)) s (logs: $LOGS)"
  echo "$KUBECONFIG_FILE"
}

# `stop NAME`: SIGTERM to the process NAME's pidfile names (if it is NAME's), SIGKILL after 20 s.
stop() {
  local pid _
  if alive "$1"; then
    pid=$(cat "$RUN/$1.pid")
    kill -TERM "$pid"
    for _ in $(seq 1 40); do alive "$1" || break; sleep 0.5; done
    if alive "$1"; then kill -KILL "$pid"; sleep 0.5; fi
    alive "$1" && die "$1 ($pid) did not stop"
  fi
  rm -f "$RUN/$1.pid"
}

down() {
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[i]}"; done
  rm -rf "$DATA"
  log "cluster: stopped, data deleted"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) running && echo "$KUBECONFIG_FILE" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
