#!/usr/bin/env bash
# make demo: a local fleet of three real control planes (aws, aliyun, vmware), the Helm
# chart installed in `aws` with the operator image (`make image`) running in a pod on the
# cluster's real node, and the examples applied. Leaves everything running; `make demo-down`
# stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO="$PWD/.demo"
BIN="$PWD/.tools/bin"
mkdir -p "$DEMO"
export KUBECONFIG="$DEMO/aws.kubeconfig"
kubectl() { "$BIN/kubectl" "$@"; }
helm() { "$BIN/helm" "$@"; }
step() { printf '\n== %s\n' "$*"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
IMAGE="${IMAGE:-$PWD/target/image/vigil-$VERSION-amd64.tar}"
[ -f "$IMAGE" ] || { echo "$IMAGE is missing: run make image" >&2; exit 1; }
# Every peer of the fleet is at this address, from the operator's pod and from here.
HOST=198.18.0.1

step "building the local fleet"
cargo build --quiet --bin vigil-local -p vigil-e2e

if alive "$DEMO/fleet.pid" && [ -f "$DEMO/ready" ]; then
    step "the local fleet is already running"
else
    step "starting the local fleet (etcd, kube-apiserver, controller-manager, scheduler, kwok, CoreDNS per cluster; a real node in aws)"
    nohup target/debug/vigil-local "$DEMO" "$IMAGE" "$PWD/.tools/images/crashers.tar" >"$DEMO/fleet.log" 2>&1 &
    echo $! >"$DEMO/fleet.pid"
    for _ in $(seq 1 180); do
        [ -f "$DEMO/ready" ] && break
        alive "$DEMO/fleet.pid" || { cat "$DEMO/fleet.log"; echo "the fleet did not start" >&2; exit 1; }
        sleep 1
    done
    [ -f "$DEMO/ready" ] || { cat "$DEMO/fleet.log"; echo "the fleet did not start within 180s" >&2; exit 1; }
    cat "$DEMO/fleet.log"
fi

step "namespace shop in every cluster (the examples' namespace; certificates are copied there)"
for kc in "$DEMO/aws.kubeconfig" "$DEMO/aliyun.kubeconfig" "$DEMO/vmware.kubeconfig"; do
    KUBECONFIG="$kc" kubectl create namespace shop --dry-run=client -o yaml | KUBECONFIG="$kc" kubectl apply -f - >/dev/null
done

step "kubeconfig Secrets of the aliyun and vmware clusters (their API servers at $HOST, which the operator's pod reaches)"
kubectl create namespace vigil-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for member in aliyun vmware; do
    kubectl -n vigil-system create secret generic "$member-kubeconfig" \
        --from-file=kubeconfig="$DEMO/$member.kubeconfig" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done

step "helm upgrade --install vigil charts/vigil: the operator image in a pod on aws's real node"
cat >"$DEMO/values.yaml" <<VALUES
rbac:
  secretNamespaces: [shop]
prometheusUrl: http://$HOST:19090
statusIntervalSeconds: 15
acme:
  http01Port: 15002
# The demo's real node is tainted: only the operator runs there, the examples' workloads
# (images that do not exist here) go to kwok's nodes.
nodeSelector:
  vigil.io/node: real
tolerations:
  - {key: vigil.io/node, operator: Equal, value: real, effect: NoSchedule}
VALUES
helm upgrade --install vigil charts/vigil --namespace vigil-system -f "$DEMO/values.yaml" \
    --wait --timeout 180s >/dev/null
kubectl get crds -l app.kubernetes.io/name=vigil
kubectl -n vigil-system get pods -o wide
kubectl -n vigil-system wait --for=condition=Ready pod -l app.kubernetes.io/name=vigil --timeout=60s >/dev/null
POD_IP="$(kubectl -n vigil-system get pods -l app.kubernetes.io/name=vigil -o jsonpath='{.items[0].status.podIP}')"

step "kubectl apply -f examples/ (but examples/certificates, which points at Let's Encrypt: the demo has its own ACME server)"
for dir in examples/*/; do
    [ "$dir" = examples/certificates/ ] && continue
    kubectl apply --server-side -R -f "$dir"
done

step "a certificate from the demo's Pebble: HTTP-01 for www.demo.test, DNS-01 (RFC 2136 to bind9) for *.shop.demo.test, copied to aliyun and vmware"
kubectl -n vigil-system create secret generic demo-tsig --from-file=secret="$DEMO/tsig-secret" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# Pebble validates www.demo.test over HTTP at the operator's pod.
nsupdate -y "hmac-sha256:vigil-demo:$(cat "$DEMO/tsig-secret")" <<NSUPDATE
server 127.0.0.1 15356
zone demo.test
update delete www.demo.test A
update add www.demo.test 60 A $POD_IP
send
NSUPDATE
python3 - "$DEMO" <<'PY' | kubectl apply --server-side -f -
import json, pathlib, sys
demo = pathlib.Path(sys.argv[1])
issuer = {"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeIssuer", "metadata": {"name": "demo-pebble"},
  "spec": {"server": (demo / "pebble-directory").read_text(), "email": "platform@demo.test",
    "caBundle": (demo / "pebble-ca.pem").read_text(), "privateKeySecretRef": {"name": "demo-pebble-account"},
    "solvers": [
      {"selector": {"dnsNames": ["www.demo.test"]}, "http01": {}},
      {"selector": {"dnsZones": ["demo.test"]}, "dns01": {"rfc2136": {"nameserver": "198.18.0.1:15356",
        "tsigKeyName": "vigil-demo", "tsigSecretRef": {"name": "demo-tsig", "key": "secret"}}}}]}}
cert = {"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate", "metadata": {"name": "demo-tls", "namespace": "shop"},
  "spec": {"issuerRef": {"name": "demo-pebble"}, "dnsNames": ["www.demo.test", "shop.demo.test", "*.shop.demo.test"],
    "secretName": "demo-tls", "distribute": {"clusters": ["aliyun", "vmware"]}}}
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [issuer, cert]}))
PY
kubectl -n shop wait --for=condition=Ready acmecertificate/demo-tls --timeout=120s
kubectl -n shop get acmecertificates

step "waiting for the member clusters to be probed"
kubectl wait --for=condition=Ready memberclusters --all --timeout=120s

step "cross-cloud DNS: orders exists only in aliyun; aws resolves orders.shop.svc.clusterset.local"
KUBECONFIG="$DEMO/aliyun.kubeconfig" kubectl -n shop create service clusterip orders --tcp=80:8080 \
    --dry-run=client -o yaml | KUBECONFIG="$DEMO/aliyun.kubeconfig" kubectl apply -f - >/dev/null
ORDERS_IP="$(KUBECONFIG="$DEMO/aliyun.kubeconfig" kubectl -n shop get service orders -o jsonpath='{.spec.clusterIP}')"
kubectl wait --for=condition=Ready crossclouddns/clusterset --timeout=120s
kubectl get crossclouddns clusterset -o custom-columns='CLUSTER:.status.clusters[*].cluster,HEALTHY:.status.clusters[*].resolverHealthy,APPLIED:.status.clusters[*].applied'
ANSWER=""
for _ in $(seq 1 30); do
    ANSWER="$(dig +short @127.0.0.1 -p 15353 orders.shop.svc.clusterset.local A || true)"
    [ "$ANSWER" = "$ORDERS_IP" ] && break
    sleep 1
done
echo "dig @aws orders.shop.svc.clusterset.local -> ${ANSWER:-no answer} (aliyun's orders Service: $ORDERS_IP)"
[ "$ANSWER" = "$ORDERS_IP" ] || { echo "cross-cloud DNS did not resolve orders from aws" >&2; exit 1; }
echo "dig @vmware orders.shop.svc.aliyun.clusterset.local -> $(dig +short @127.0.0.1 -p 15355 orders.shop.svc.aliyun.clusterset.local A)"

step "a real crash loop: checkout in namespace crashlab, a Go service (e2e/tools/crashers) that dereferences nil 1 s after it starts, on aws's real node"
kubectl create namespace crashlab --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply --server-side -f - >/dev/null <<'YAML'
apiVersion: vigil.io/v1alpha1
kind: SupervisedWorkload
metadata: {name: checkout, namespace: crashlab}
spec:
  target: {kind: Deployment, name: checkout}
  isolation: {profile: restricted, readOnlyRootFilesystem: true}
  crashCapture: {logTailLines: 50}
  circuitBreaker: {maxCrashes: 3, window: 10m, action: ScaleToZero, cooldown: 5m}
YAML
# The webhook isolates the pods only once the operator knows the object.
kubectl -n crashlab wait --for=jsonpath='{.status.observedGeneration}'=1 supervisedworkload/checkout --timeout=60s >/dev/null
kubectl apply --server-side -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout, namespace: crashlab}
spec:
  replicas: 1
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec:
      nodeSelector: {vigil.io/node: real}
      tolerations: [{key: vigil.io/node, operator: Equal, value: real, effect: NoSchedule}]
      containers:
        - name: app
          image: vigil.test/crashers:1
          command: ["/crasher", "panic"]
          env: [{name: CRASH_AFTER, value: 1s}]
YAML
echo "the kubelet restarts it (CrashLoopBackOff: at once, then 10 s, doubling); the breaker opens after 3 crashes"
kubectl -n crashlab wait --for=jsonpath='{.status.breaker}'=Open supervisedworkload/checkout --timeout=120s
kubectl -n crashlab get supervisedworkload checkout
kubectl -n crashlab get deployment checkout
step "kubectl -n crashlab describe supervisedworkload checkout"
kubectl -n crashlab describe supervisedworkload checkout | sed -n '/^Status:/,$p'
echo "the sealed snapshot, with the log the kubelet kept (kubectl -n crashlab get configmap checkout-crashes -o jsonpath='{.data.sealed\.json}'):"
kubectl -n crashlab get configmap checkout-crashes -o jsonpath='{.data.sealed\.json}'; echo

step "loading the SLO rule files the operator wrote into the local Prometheus"
for _ in $(seq 1 30); do
    [ "$(kubectl get configmaps -A -l vigil.io/slo -o name | wc -l)" -ge 2 ] && break
    sleep 1
done
kubectl get configmaps -A -l vigil.io/slo -o json |
    python3 -c 'import json,sys,pathlib
for cm in json.load(sys.stdin)["items"]:
    for key, text in cm.get("data", {}).items():
        pathlib.Path(sys.argv[1], key).write_text(text)
        print("  " + key)' "$DEMO/prometheus/rules"
curl -s -X POST 127.0.0.1:19090/-/reload
kubectl get slo -n shop -o custom-columns='NAME:.metadata.name,RULES:.status.conditions[?(@.type=="RulesGenerated")].message'

step "telemetry: each cluster's Collector configuration is checked by the Collector's own validate (a Job) before the gateway switches to it"
kubectl -n shop wait --for=condition=Ready telemetrypipeline/shop --timeout=120s
kubectl -n shop get telemetrypipeline shop -o custom-columns='CLUSTER:.status.clusters[*].cluster,RUNNING:.status.clusters[*].activeConfig,SAMPLING:.status.sampling.percentage'
echo "vmware's gateway runs $(KUBECONFIG="$DEMO/vmware.kubeconfig" kubectl -n shop get deployment vigil-otel-shop -o jsonpath='{.metadata.name}: {.spec.template.metadata.annotations.vigil\.io/collector-config}')"
step "a port forgotten in the spec: the Collector refuses the configuration, the gateways keep theirs"
GOOD="$(KUBECONFIG="$DEMO/vmware.kubeconfig" kubectl -n shop get deployment vigil-otel-shop -o jsonpath='{.spec.template.metadata.annotations.vigil\.io/collector-config}')"
kubectl -n shop patch telemetrypipeline shop --type=merge \
    -p '{"spec":{"backends":{"vmware":{"tracesOtlpEndpoint":"http://tempo.observability"}}}}' >/dev/null
kubectl -n shop wait --for=condition=Validated=False telemetrypipeline/shop --timeout=120s
kubectl -n shop get telemetrypipeline shop -o jsonpath='{.status.conditions[?(@.type=="Validated")].message}'; echo
NOW="$(KUBECONFIG="$DEMO/vmware.kubeconfig" kubectl -n shop get deployment vigil-otel-shop -o jsonpath='{.spec.template.metadata.annotations.vigil\.io/collector-config}')"
echo "vmware's gateway still runs $NOW (before: $GOOD)"
[ "$NOW" = "$GOOD" ] || { echo "the refused configuration replaced the running one" >&2; exit 1; }
kubectl -n shop patch telemetrypipeline shop --type=merge \
    -p '{"spec":{"backends":{"vmware":{"tracesOtlpEndpoint":"http://tempo.observability:4317"}}}}' >/dev/null
kubectl -n shop wait --for=condition=Ready telemetrypipeline/shop --timeout=120s >/dev/null
echo "fixed: Ready again"
step "kubectl get vigil -A"
kubectl get vigil -A
step "vigil status -A: the fleet at a glance, worst first (also kubectl vigil status -A)"
# The binary of the image (make image built it).
target/x86_64-unknown-linux-musl/release/vigil status -A
step "kubectl get memberclusters"
kubectl get memberclusters
step "why each object is or is not Ready"
kubectl get vigil -A -o custom-columns='KIND:.kind,NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,REASON:.status.conditions[?(@.type=="Ready")].reason'
step "operator metrics (curl $POD_IP:8080/metrics)"
curl -s "$POD_IP:8080/metrics" | grep -E '^vigil_(reconcile_panics_total|reconcile_errors_total|member_cluster_probe_duration_seconds_count)' | head -12 || true

cat <<EOT

The SLO budget appears once Prometheus has the first 5-minute step of the window (up to
five minutes): watch it with  $BIN/kubectl get slo -n shop -w   (checkout-availability:
the demo's checkout fails 0.05% of requests against 99.9%, so 50.00% of the budget is left).

The fleet keeps running. Use it with:
  export KUBECONFIG=$DEMO/aws.kubeconfig      # also aliyun.kubeconfig, vmware.kubeconfig
  $BIN/kubectl get vigil -A
Operator log: $BIN/kubectl -n vigil-system logs deploy/vigil   Fleet log: $DEMO/fleet.log
Stop everything with: make demo-down
EOT
