#!/usr/bin/env bash
# End-to-end test of the operator on a real cluster:
#   1. builds the vaultd and operator images (docker/),
#   2. creates a kind cluster — or, when KUBECONFIG is set, uses that cluster,
#   3. installs the chart, applies the example SoftHSM PiiVault (3 replicas), waits for Ready,
#   4. creates and reads a user through the vault's client Service (a login unique to this
#      run, so the script can run again against the same cluster and vault),
#   5. scales 3 -> 5 -> 3, deletes a pod and waits for the vault to recover, reads again,
#   6. applies a RetentionPolicy that drops phone numbers, runs it once by hand
#      (`kubectl create job --from=cronjob/...`), waits for the Job and for the run in the
#      policy's status.lastRun, checks the phone is gone, then deletes the policy and checks
#      that its CronJob and its vault token are gone too.
#
# Needs docker, kubectl, and kind (unless KUBECONFIG is given); fetches Helm itself.
# Environment:
#   KUBECONFIG        use this cluster instead of creating a kind cluster; the images must
#                     then be pullable by it: set VAULTD_IMAGE and OPERATOR_IMAGE and
#                     SKIP_BUILD=1, or push what this script builds (PUSH_IMAGES=1).
#   VAULTD_IMAGE      default strongroom/vaultd:e2e
#   OPERATOR_IMAGE    default strongroom/strongroom-operator:e2e
#   SKIP_BUILD=1      use the images as they are
#   KIND_NODE_IMAGE   default kindest/node:v1.33.1
#   KEEP_CLUSTER=1    leave the kind cluster (and everything in it) behind
#   TIMEOUT           wait per step, default 600s (seconds, with or without "s", or minutes "10m")
set -euo pipefail
cd "$(dirname "$0")/.."

vaultd_image=${VAULTD_IMAGE:-strongroom/vaultd:e2e}
operator_image=${OPERATOR_IMAGE:-strongroom/strongroom-operator:e2e}
kind_node_image=${KIND_NODE_IMAGE:-kindest/node:v1.33.1}
timeout=${TIMEOUT:-600s}
case $timeout in
  *m) timeout_seconds=$((${timeout%m} * 60)) ;;
  *s) timeout_seconds=${timeout%s} ;;
  *) timeout_seconds=$timeout ;;
esac
[[ $timeout_seconds =~ ^[0-9]+$ ]] || { echo "e2e: TIMEOUT must be like 600s or 10m, not $timeout" >&2; exit 2; }
timeout=${timeout_seconds}s
cluster_name=strongroom-e2e
operator_namespace=strongroom-system
namespace=strongroom-e2e
vault=vault
policy=e2e-drop-phone

log() { printf '\n== %s\n' "$*" >&2; }
fail() { printf 'e2e: FAILED: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || fail "$1 is not installed"; }

need kubectl
helm=$(hack/ensure-helm.sh)

created_cluster=""
cleanup() {
  status=$?
  if [ "$status" != 0 ]; then
    log "diagnostics"
    kubectl get piivaults,statefulsets,pods,pvc -n "$namespace" -o wide || true
    kubectl describe piivault "$vault" -n "$namespace" || true
    kubectl get retentionpolicies,cronjobs,jobs -n "$namespace" -o wide || true
    kubectl describe retentionpolicy "$policy" -n "$namespace" || true
    kubectl logs -n "$namespace" -l "app.kubernetes.io/instance=$policy" --tail=50 || true
    kubectl logs -n "$operator_namespace" deployment/strongroom-operator --tail=100 || true
  fi
  if [ -n "$created_cluster" ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    kind delete cluster --name "$cluster_name" || true
  fi
  exit "$status"
}
trap cleanup EXIT

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  need docker
  log "building $vaultd_image and $operator_image"
  docker build -f docker/vaultd.Dockerfile -t "$vaultd_image" .
  docker build -f docker/operator.Dockerfile -t "$operator_image" .
  if [ "${PUSH_IMAGES:-0}" = 1 ]; then
    docker push "$vaultd_image"
    docker push "$operator_image"
  fi
fi

if [ -z "${KUBECONFIG:-}" ]; then
  need kind
  need docker
  log "creating kind cluster $cluster_name ($kind_node_image)"
  kubeconfig=$(mktemp)
  export KUBECONFIG=$kubeconfig
  kind create cluster --name "$cluster_name" --image "$kind_node_image" --wait 120s
  created_cluster=1
  kind load docker-image --name "$cluster_name" "$vaultd_image" "$operator_image"
else
  log "using the cluster in $KUBECONFIG"
fi

log "installing the CRDs and the operator chart"
# Helm installs CRDs only when they are absent and never upgrades them: on a reused cluster
# the ones from an earlier run would stay.
kubectl apply -f crds/
"$helm" upgrade --install strongroom-operator charts/strongroom-operator \
  --namespace "$operator_namespace" --create-namespace \
  --set image.repository="${operator_image%:*}" --set image.tag="${operator_image##*:}" \
  --set image.pullPolicy=IfNotPresent \
  --set "policy.allowedImages={${vaultd_image%:*}:*}" \
  --wait --timeout "$timeout"
kubectl wait --for=condition=Established crd/piivaults.strongroom.dev crd/retentionpolicies.strongroom.dev --timeout=60s

log "creating the example SoftHSM vault (3 replicas)"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
sed "s#^  image: .*#  image: ${vaultd_image}#" charts/strongroom-operator/examples/piivault-softhsm.yaml |
  kubectl apply -n "$namespace" -f -

# Waits until the vault reports Ready with `want` healthy voters — a Ready condition about the
# current spec (its observedGeneration is metadata.generation: a Ready left over from before
# the last change does not count) — and a StatefulSet of that size.
wait_ready() {
  local want=$1 deadline=$((SECONDS + timeout_seconds)) state generation observed ready replicas
  local fields='{.metadata.generation}|{.status.conditions[?(@.type=="Ready")].observedGeneration}|{.status.conditions[?(@.type=="Ready")].status}|{.status.readyReplicas}'
  while :; do
    state=$(kubectl get piivault "$vault" -n "$namespace" -o jsonpath="$fields" 2>/dev/null || true)
    IFS='|' read -r generation observed ready replicas <<<"$state"
    if [ "$ready" = True ] && [ -n "$generation" ] && [ "$observed" = "$generation" ] && [ "$replicas" = "$want" ]; then
      break
    fi
    [ "$SECONDS" -lt "$deadline" ] ||
      fail "vault not Ready with $want voters (generation|observedGeneration|Ready|readyReplicas: $state)"
    sleep 5
  done
  kubectl wait statefulset/"$vault" -n "$namespace" --for=jsonpath='{.spec.replicas}'="$want" --timeout="$timeout"
  kubectl get piivault "$vault" -n "$namespace"
}
wait_ready 3

api="https://${vault}.${namespace}.svc:3000"

# Runs a shell script (stdin) with curl in a pod and prints its output. The pod gets the
# client Service's URL in $API and the root token, from the generated Secret, in $TOKEN —
# the token never reaches a command line or this script's output. curl trusts only the
# vault's API CA (CURL_CA_BUNDLE, from the Secret the operator issued the certificate into).
vault_api() {
  local name=$1 script
  script=$(sed 's/^/          /')
  kubectl delete pod "$name" -n "$namespace" --ignore-not-found >/dev/null
  kubectl apply -n "$namespace" -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $name
spec:
  restartPolicy: Never
  containers:
    - name: curl
      image: curlimages/curl:8.11.1
      env:
        - name: API
          value: "$api"
        - name: TOKEN
          valueFrom:
            secretKeyRef:
              name: $vault-root-token
              key: token
        - name: CURL_CA_BUNDLE
          value: /etc/vault-ca/ca.crt
      volumeMounts:
        - name: vault-ca
          mountPath: /etc/vault-ca
          readOnly: true
      command: ["sh", "-c"]
      args:
        - |
$script
  volumes:
    - name: vault-ca
      secret:
        secretName: $vault-api-tls
        items:
          - key: ca.crt
            path: ca.crt
YAML
  if ! kubectl wait pod/"$name" -n "$namespace" --for=jsonpath='{.status.phase}'=Succeeded --timeout=180s >/dev/null; then
    kubectl logs "$name" -n "$namespace" >&2 || true
    fail "pod $name did not succeed"
  fi
  kubectl logs "$name" -n "$namespace"
  kubectl delete pod "$name" -n "$namespace" --wait=false >/dev/null
}

# Unique per run: a second run against the same vault must not collide with the first's user.
login="e2e-$(date +%s)-$RANDOM"
log "smoke test through the Service $api (user $login)"
# $API and $TOKEN are expanded in the pod, $login here.
created=$(vault_api smoke-create <<SH
curl -sf -X POST "\$API/v1/user" -H "X-Bunker-Token: \$TOKEN" -H 'Content-Type: application/json' \\
  -d '{"first":"John","last":"Doe","login":"$login","email":""}'
SH
)
echo "$created" | grep -q '"status":"ok"' || fail "creating a user: $created"

read_back() {
  local found
  found=$(vault_api "smoke-read-$1" <<SH
curl -sf "\$API/v1/user/login/$login" -H "X-Bunker-Token: \$TOKEN"
SH
)
  echo "$found" | grep -q '"first":"John"' || fail "reading the user back ($1): $found"
  echo "$found" | grep -q "\"login\":\"$login\"" || fail "read back another user ($1): $found"
}
read_back initial

log "scaling 3 -> 5"
kubectl patch piivault "$vault" -n "$namespace" --type merge -p '{"spec":{"replicas":5}}'
wait_ready 5
read_back scaled-up

log "scaling 5 -> 3"
kubectl patch piivault "$vault" -n "$namespace" --type merge -p '{"spec":{"replicas":3}}'
wait_ready 3
members=$(kubectl get piivault "$vault" -n "$namespace" -o jsonpath='{.status.members[*].pod}')
[ "$members" = "$vault-0 $vault-1 $vault-2" ] || fail "members after scaling down: $members"

log "deleting pod $vault-1 and waiting for recovery"
old_uid=$(kubectl get pod "$vault-1" -n "$namespace" -o jsonpath='{.metadata.uid}')
kubectl delete pod "$vault-1" -n "$namespace" --wait=true
# The StatefulSet recreates the pod under the same name, but not at once: until then
# `kubectl wait pod/...` would fail with NotFound. Wait for a pod with a new uid first.
deadline=$((SECONDS + timeout_seconds))
while :; do
  new_uid=$(kubectl get pod "$vault-1" -n "$namespace" -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
  if [ -n "$new_uid" ] && [ "$new_uid" != "$old_uid" ]; then
    break
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "pod $vault-1 was not recreated"
  sleep 2
done
kubectl wait pod/"$vault-1" -n "$namespace" --for=condition=Ready --timeout="$timeout"
wait_ready 3
read_back recovered

log "retention: policy $policy drops the phone numbers of every subject"
phone_login="e2e-phone-$(date +%s)-$RANDOM"
# From the UK's range for fiction (07700 900000-900999); a run's policy drops it again.
phone="+447700900$(printf %03d $((RANDOM % 1000)))"
created=$(vault_api retention-create <<SH
curl -sf -X POST "\$API/v1/user" -H "X-Bunker-Token: \$TOKEN" -H 'Content-Type: application/json' \\
  -d '{"first":"Jane","login":"$phone_login","phone":"$phone"}'
SH
)
echo "$created" | grep -q '"status":"ok"' || fail "creating a user with a phone: $created"
kubectl apply -n "$namespace" -f - <<YAML
apiVersion: strongroom.dev/v1alpha1
kind: RetentionPolicy
metadata:
  name: $policy
spec:
  vaultRef:
    name: $vault
  # Never on its own during the test: the run is started by hand below.
  schedule: "0 0 1 1 *"
  rules:
    - name: drop-phone
      match:
        olderThan: 0s
        hasFields: [phone]
      action: dropFields
      fields: [phone]
YAML
kubectl wait retentionpolicy/"$policy" -n "$namespace" --for=condition=Ready --timeout="$timeout"
kubectl get retentionpolicy "$policy" -n "$namespace"
# A run of an earlier test against the same vault may be in the status already.
previous_run=$(kubectl get retentionpolicy "$policy" -n "$namespace" -o jsonpath='{.status.lastRun.auditEventId}')

job="$policy-$(date +%s)"
log "retention: running the policy once (job $job)"
kubectl create job "$job" -n "$namespace" --from=cronjob/"retention-$policy"
deadline=$((SECONDS + timeout_seconds))
while :; do
  state=$(kubectl get job "$job" -n "$namespace" \
    -o jsonpath='{.status.conditions[?(@.type=="Complete")].status}|{.status.conditions[?(@.type=="Failed")].status}')
  case $state in
    True\|*) break ;;
    *\|True) kubectl logs -n "$namespace" "job/$job" >&2 || true; fail "retention job $job failed" ;;
  esac
  [ "$SECONDS" -lt "$deadline" ] || fail "retention job $job did not finish"
  sleep 3
done
kubectl logs -n "$namespace" "job/$job"

# The operator reads the run back from the vault (at the latest on its next refresh).
deadline=$((SECONDS + timeout_seconds))
while :; do
  run=$(kubectl get retentionpolicy "$policy" -n "$namespace" \
    -o jsonpath='{.status.lastRun.auditEventId}|{.status.lastRun.changed}|{.status.lastRun.time}')
  IFS='|' read -r audit_id changed run_time <<<"$run"
  if [ -n "$audit_id" ] && [ "$audit_id" != "$previous_run" ]; then
    break
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "status.lastRun of $policy never showed the run (auditEventId|changed|time: $run)"
  sleep 5
done
kubectl get retentionpolicy "$policy" -n "$namespace"
[ "${changed:-0}" -ge 1 ] || fail "the run at $run_time changed nothing (lastRun: $run)"
found=$(vault_api retention-read <<SH
curl -sf "\$API/v1/user/login/$phone_login" -H "X-Bunker-Token: \$TOKEN"
SH
)
echo "$found" | grep -q '"first":"Jane"' || fail "reading the retention user back: $found"
if echo "$found" | grep -q '"phone"'; then fail "the phone survived the run: $found"; fi

log "retention: deleting policy $policy revokes its token and removes its CronJob"
kubectl delete retentionpolicy "$policy" -n "$namespace" --wait=true --timeout="$timeout"
kubectl wait cronjob/"retention-$policy" -n "$namespace" --for=delete --timeout="$timeout"
tokens=$(vault_api retention-tokens <<SH
curl -sf "\$API/v1/sys/tokens" -H "X-Bunker-Token: \$TOKEN"
SH
)
echo "$tokens" | grep -q '"status":"ok"' || fail "listing tokens: $tokens"
if echo "$tokens" | grep -q "\"retention-$namespace-$policy\""; then fail "the policy's token survived: $tokens"; fi

log "e2e: ok"
