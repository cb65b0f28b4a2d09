# The suite's cluster, as facts both harness/cluster.sh and harness/cluster/node.sh use (sourced).
# The nodes' network is a bridge on this host that nothing routes, in the shared address space
# (RFC 6598) a Headscale tailnet gives K3s nodes, as in Phase 1 (so the chart's rules for node
# addresses are tested as they will meet them); the API server listens on this host's address
# there only. A test's stand-in for "the internet" is a TEST-NET-3 address (RFC 5737).
# shellcheck shell=bash disable=SC2034  # read by the scripts that source it

RUN=/run/manacore-cluster            # pidfiles, pki/, *.kubeconfig, logs/, nodes/ (kept by `down`)
DATA=$RUN/data                       # etcd's data (deleted by `down`)
PKI=$RUN/pki
LOGS=$RUN/logs
KUBECONFIG_FILE=$RUN/admin.kubeconfig

# real nodes node-1 … node-$NODES: three, so that the estate (two copies of each user-facing
# service) still fits on the others' CPU requests while one is drained or lost
NODES=${MANACORE_NODES:-3}
BRIDGE=mcnodes0                      # the nodes' network, on this host
HOST_IP=100.64.100.1                 # this host on it: the API server's address
NODE_PREFIX=24
node_ip() { echo "100.64.100.$((10 + $1))"; }
CLUSTER_CIDR=10.244.0.0/16           # pods; node N's are 10.244.N.0/24
pod_cidr() { echo "10.244.$1.0/24"; }
SERVICE_CIDR=10.96.0.0/16            # its first address is the `kubernetes` Service's
DNS_IP=10.96.0.10                    # the kube-dns Service (CoreDNS)
APISERVER_PORT=16443
APISERVER=https://$HOST_IP:$APISERVER_PORT
ETCD_CLIENT=http://127.0.0.1:12379   # loopback only, so plain HTTP
ETCD_PEER=http://127.0.0.1:12380
SA_ISSUER=https://kubernetes.default.svc.cluster.local
SIMULATED_TAINT=manacore.dev/simulated  # on the kwok nodes: only pods that tolerate it go there
# images every real node holds before its kubelet starts, built into the suite's Docker engine
# by harness/images.py: the pod sandbox (containerd's pinned one), the local-path helper, CoreDNS
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1  # = build/pause/Makefile TAG of the Kubernetes release
HELPER_IMAGE=manacore-harness/busybox:defconfig
COREDNS_IMAGE=manacore-harness/coredns:local
# the host sysctls the kubelet sets (pkg/kubelet/cm: setupKernelTunables); restored by `down`
KERNEL_TUNABLES=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
                 kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
