#!/usr/bin/env bash
# End-to-end check of the toolchain built by install.sh: starts etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kwok from
# .tools/bin on loopback ports, registers a fake Node, creates a Pod, waits
# until kwok reports it Running, prints how long every step took, and stops
# everything it started. It is the executable form of README.md.
#
#   e2e/tools/smoke-cluster.sh
#   KEEP_WORKDIR=1 ...          keep the work dir (certs, logs, kubeconfigs)
#   ETCD_BIN=/usr/bin/etcd ...  try another etcd
#   BASE_PORT=24000 ...         use ports BASE_PORT..BASE_PORT+5 (default 23790)
#   TOOLS_DIR=/x/.tools ...     binaries in /x/.tools/bin, stages in /x/.tools/kwok
#   ETCD_EXTRA_FLAGS=" " ...    replace the default extra etcd flag --unsafe-no-fsync
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$REPO/.tools}"
BIN="$TOOLS/bin"
ETCD_BIN="${ETCD_BIN:-$BIN/etcd}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vigil-smoke.XXXXXX")"

BASE_PORT="${BASE_PORT:-23790}"
ETCD_PORT=$BASE_PORT               # etcd client (http)
ETCD_PEER_PORT=$((BASE_PORT + 1))  # etcd peer (http, single member)
APISERVER_PORT=$((BASE_PORT + 2))  # kube-apiserver (https)
KCM_PORT=$((BASE_PORT + 3))        # kube-controller-manager /healthz (https)
SCHED_PORT=$((BASE_PORT + 4))      # kube-scheduler /healthz (https)
KWOK_PORT=$((BASE_PORT + 5))       # kwok /healthz (http)

PIDS=()
# stop <pid>: SIGTERM, then SIGKILL if it is still alive after 10 s
stop() {
    local pid="$1" i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    # Reverse start order: etcd last. kube-apiserver takes minutes to exit
    # once etcd is gone, so never stop etcd first.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop "${PIDS[i]}"; done
    if [ "${KEEP_WORKDIR:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
        echo "work dir kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

now_ms() { date +%s%3N; }
T0=$(now_ms)
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%03ds' $((ms / 1000)) $((ms % 1000)); }

# wait_for <what> <timeout s> <command...>: poll every 100 ms
wait_for() {
    local what="$1" timeout="$2" start; shift 2
    start=$(now_ms)
    until "$@" >/dev/null 2>&1; do
        local pid
        for pid in "${PIDS[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "a process exited while waiting for $what" >&2
                tail -n 5 "$WORK"/*.log >&2 || true
                return 1
            fi
        done
        if [ $(( $(now_ms) - start )) -gt $((timeout * 1000)) ]; then
            echo "timed out after ${timeout}s waiting for $what" >&2
            tail -n 30 "$WORK"/*.log >&2 || true
            return 1
        fi
        sleep 0.1
    done
    echo "$what after $(elapsed "$start")"
}

# ------------------------------------------------------------------ PKI ----
cd "$WORK"
mkdir -p pki
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "pki/$1.key" 2>/dev/null; }
# sign <name> <subject> <extensions...>
sign() {
    local name="$1" subj="$2"; shift 2
    newkey "$name"
    openssl req -new -key "pki/$name.key" -subj "$subj" -out "pki/$name.csr"
    printf '%s\n' "$@" >"pki/$name.ext"
    openssl x509 -req -in "pki/$name.csr" -CA pki/ca.crt -CAkey pki/ca.key \
        -CAcreateserial -days 365 -sha256 -extfile "pki/$name.ext" \
        -out "pki/$name.crt" 2>/dev/null
}
newkey ca
openssl req -x509 -new -key pki/ca.key -subj "/CN=vigil-e2e-ca" -days 365 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out pki/ca.crt
SERVER_EXT=("basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth")
CLIENT_EXT=("basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth")
sign apiserver "/CN=kube-apiserver" "${SERVER_EXT[@]}" \
    "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=vigil-e2e-admin" "${CLIENT_EXT[@]}"
sign controller-manager "/CN=system:kube-controller-manager" "${CLIENT_EXT[@]}"
sign scheduler "/CN=system:kube-scheduler" "${CLIENT_EXT[@]}"
sign kwok "/O=system:masters/CN=kwok-controller" "${CLIENT_EXT[@]}"
# service-account token signing key (ES256). --service-account-key-file needs
# the PUBLIC key PEM: kube-apiserver 1.36 rejects a private key there.
newkey sa
openssl pkey -in pki/sa.key -pubout -out pki/sa.pub
echo "pki generated after $(elapsed "$T0")"

kubeconfig() { # <name>: kubeconfig using pki/<name>.{crt,key}
    cat >"$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $WORK/pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $WORK/pki/$1.crt
    client-key: $WORK/pki/$1.key
contexts:
- name: e2e
  context: {cluster: e2e, user: $1}
current-context: e2e
EOF
}
for n in admin controller-manager scheduler kwok; do kubeconfig "$n"; done
export KUBECONFIG="$WORK/admin.kubeconfig"
kubectl() { "$BIN/kubectl" "$@"; }

# ----------------------------------------------------------------- etcd ----
etcd_version="$("$ETCD_BIN" --version)"  # no "| head -1": SIGPIPE + pipefail race
echo "${etcd_version%%$'\n'*}"
"$ETCD_BIN" --name=e2e --data-dir="$WORK/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --log-level=warn ${ETCD_EXTRA_FLAGS:---unsafe-no-fsync} \
    >etcd.log 2>&1 &
PIDS+=($!)
wait_for "etcd /health ok" 30 sh -c "curl -sf http://127.0.0.1:$ETCD_PORT/health | grep -q '\"health\":\"true\"'"

# ------------------------------------------------------- kube-apiserver ----
"$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --tls-cert-file=pki/apiserver.crt --tls-private-key-file=pki/apiserver.key \
    --client-ca-file=pki/ca.crt \
    --requestheader-client-ca-file=pki/ca.crt \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file=pki/sa.pub --service-account-signing-key-file=pki/sa.key \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=Node,RBAC \
    --endpoint-reconciler-type=none \
    --profiling=false \
    >kube-apiserver.log 2>&1 &
PIDS+=($!)
APICURL=(curl -sf --cacert pki/ca.crt --cert pki/admin.crt --key pki/admin.key)
wait_for "kube-apiserver /readyz ok" 120 "${APICURL[@]}" "https://127.0.0.1:$APISERVER_PORT/readyz"
"${APICURL[@]}" "https://127.0.0.1:$APISERVER_PORT/version" | grep gitVersion

# ---------------------------------------------- kube-controller-manager ----
"$BIN/kube-controller-manager" \
    --kubeconfig=controller-manager.kubeconfig \
    --authentication-kubeconfig=controller-manager.kubeconfig \
    --authorization-kubeconfig=controller-manager.kubeconfig \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --kube-api-qps=200 --kube-api-burst=400 \
    --service-account-private-key-file=pki/sa.key \
    --root-ca-file=pki/ca.crt \
    --cluster-signing-cert-file=pki/ca.crt --cluster-signing-key-file=pki/ca.key \
    --flex-volume-plugin-dir="$WORK/flexvolume" \
    --profiling=false \
    >kube-controller-manager.log 2>&1 &
PIDS+=($!)
wait_for "kube-controller-manager /healthz ok" 60 curl -skf "https://127.0.0.1:$KCM_PORT/healthz"

# -------------------------------------------------------- kube-scheduler ----
cat >scheduler-config.yaml <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $WORK/scheduler.kubeconfig
leaderElection:
  leaderElect: false
EOF
"$BIN/kube-scheduler" --config=scheduler-config.yaml \
    --authentication-kubeconfig=scheduler.kubeconfig \
    --authorization-kubeconfig=scheduler.kubeconfig \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
    >kube-scheduler.log 2>&1 &
PIDS+=($!)
wait_for "kube-scheduler /readyz ok" 60 curl -skf "https://127.0.0.1:$SCHED_PORT/readyz"

# ------------------------------------------------------------------ kwok ----
"$BIN/kwok" --kubeconfig=kwok.kubeconfig \
    --config="$TOOLS/kwok/stages.yaml" \
    --manage-all-nodes=true \
    --node-lease-duration-seconds=40 \
    --cidr=10.244.0.0/16 --node-ip=10.0.1.1 \
    --server-address="127.0.0.1:$KWOK_PORT" \
    >kwok.log 2>&1 &
PIDS+=($!)
wait_for "kwok /healthz ok" 30 curl -sf "http://127.0.0.1:$KWOK_PORT/healthz"
echo "control plane ready after $(elapsed "$T0") (including PKI)"

# --------------------------------------------------------- node and pod ----
kubectl apply -f - <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-0
  annotations:
    node.alpha.kubernetes.io/ttl: "0"
    kwok.x-k8s.io/node: fake
spec:
  taints: []
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
wait_for "node created -> Ready" 60 kubectl wait --for=condition=Ready node/kwok-node-0 --timeout=1s

wait_for "default ServiceAccount exists" 60 kubectl get serviceaccount default -n default
t=$(now_ms)
kubectl apply -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: smoke
  namespace: default
spec:
  containers:
  - name: app
    image: registry.invalid/never-pulled:1
EOF
wait_for "pod Running" 60 sh -c "'$BIN/kubectl' get pod smoke -o jsonpath='{.status.phase}' | grep -qx Running"
echo "pod created -> Running after $(elapsed "$t")"
kubectl get nodes -o wide
kubectl get pods -A -o wide
# Controllers work: a Deployment becomes Available through the ReplicaSet
# controller, the scheduler and kwok.
t=$(now_ms)
kubectl create deployment smoke-deploy --image=registry.invalid/never-pulled:1 --replicas=2
kubectl rollout status deployment/smoke-deploy --timeout=60s
echo "deployment created -> 2/2 available after $(elapsed "$t")"
# Deletion works: without a kubelet, kwok's pod-delete stage is what finishes
# a graceful delete (otherwise pods stay Terminating forever).
t=$(now_ms)
kubectl delete pod smoke --wait=true --timeout=60s
echo "pod delete -> gone after $(elapsed "$t")"

# health endpoints are readable without credentials (RBAC system:public-info-viewer)
curl -skf "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null && echo "anonymous /readyz ok"
kubectl version
"$BIN/helm" list -A >/dev/null && echo "helm list -A ok"
echo "SMOKE OK in $(elapsed "$T0")"
