#!/usr/bin/env bash
# Checks the deployment artefacts without a cluster:
# - the Helm chart passes `helm lint` and renders with `helm template`, with its default
#   values and with each example values file;
# - the chart's CRDs are the generated ones in crds/ (the Rust test `crds_are_current`
#   proves crds/ matches the types);
# - the example PiiVaults and RetentionPolicies are the documented kind (the Rust test
#   `the_retention_examples_are_valid_policies_for_the_example_vault` checks their content);
# - the Grafana dashboard is valid and names only documented vaultd metrics, and
#   dashboards.enabled renders it into a sidecar-labelled ConfigMap (hack/check-dashboard.py);
# - the operator's hack scripts parse (`bash -n`) and pass shellcheck (installed with apt-get when
#   missing and we are root).
# Installs Helm itself (hack/ensure-helm.sh) when it is not on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

chart=charts/strongroom-operator
kube_version=1.33.0
helm=$(hack/ensure-helm.sh)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for values in "" "$chart"/examples/values-*.yaml; do
  args=()
  [ -n "$values" ] && args=(-f "$values")
  echo "deploy-check: helm lint/template ${values:-(default values)}"
  "$helm" lint --strict "$chart" "${args[@]}" --kube-version "$kube_version" >/dev/null
  "$helm" template strongroom-operator "$chart" "${args[@]}" --namespace strongroom-system \
    --kube-version "$kube_version" --include-crds >"$out/rendered.yaml"
  for kind in CustomResourceDefinition ServiceAccount Deployment; do
    grep -q "^kind: $kind\$" "$out/rendered.yaml" || { echo "deploy-check: no $kind rendered" >&2; exit 1; }
  done
done

if ! diff -r crds "$chart/crds"; then
  echo "deploy-check: $chart/crds differs from crds/ (run: cargo run -p strongroom-operator --bin crdgen)" >&2
  exit 1
fi

for example in "$chart"/examples/piivault-*.yaml "$chart"/examples/retention-*.yaml; do
  case $example in
    */piivault-*) kind=PiiVault ;;
    *) kind=RetentionPolicy ;;
  esac
  grep -q "^kind: $kind\$" "$example" || { echo "deploy-check: $example is not a $kind" >&2; exit 1; }
  grep -q '^apiVersion: strongroom.dev/v1alpha1$' "$example" || { echo "deploy-check: $example: wrong apiVersion" >&2; exit 1; }
done

# The operator may manage what the RetentionPolicy and PiiVaultBackup controllers create.
rules=$("$helm" template strongroom-operator "$chart" --namespace strongroom-system --kube-version "$kube_version" \
  --show-only templates/rbac.yaml)
for resource in retentionpolicies retentionpolicies/status retentionpolicies/finalizers cronjobs \
  piivaultbackups piivaultbackups/status jobs pods podmonitors servicemonitors prometheusrules; do
  grep -q "\"$resource\"" <<<"$rules" || { echo "deploy-check: the operator's role lacks $resource" >&2; exit 1; }
done

# Namespaced by default: a Role in the release namespace, no ClusterRole, the operator
# watching that namespace; a ClusterRole only with clusterWide (and then no watchNamespaces).
template() { "$helm" template strongroom-operator "$chart" --namespace strongroom-system --kube-version "$kube_version" "$@"; }
default=$(template)
grep -q '^kind: ClusterRole' <<<"$default" && { echo "deploy-check: the default install has a ClusterRole" >&2; exit 1; }
grep -q '^kind: Role$' <<<"$default" || { echo "deploy-check: the default install has no Role" >&2; exit 1; }
grep -A1 'name: STRONGROOM_WATCH_NAMESPACES' <<<"$default" | grep -q 'value: "strongroom-system"' ||
  { echo "deploy-check: the default install does not watch its own namespace only" >&2; exit 1; }
grep -q '^kind: ClusterRole$' <<<"$(template --set clusterWide=true)" ||
  { echo "deploy-check: clusterWide renders no ClusterRole" >&2; exit 1; }
if template --set clusterWide=true --set 'watchNamespaces={pii}' >/dev/null 2>&1; then
  echo "deploy-check: clusterWide with watchNamespaces must fail" >&2; exit 1
fi

# The dashboard: its JSON and metric names, then the ConfigMap dashboards.enabled renders
# (none by default).
template --show-only templates/dashboard-configmap.yaml >/dev/null 2>&1 &&
  { echo "deploy-check: the default install renders the dashboard ConfigMap" >&2; exit 1; }
template --set dashboards.enabled=true --show-only templates/dashboard-configmap.yaml >"$out/dashboard.yaml"
python3 hack/check-dashboard.py "$chart/dashboards/strongroom-vault.json" README.md "$out/dashboard.yaml"

scripts=(hack/ensure-helm.sh hack/deploy-check.sh hack/e2e-kind.sh)
for script in "${scripts[@]}"; do bash -n "$script"; done
if ! command -v shellcheck >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null) >&2 || true
fi
if command -v shellcheck >/dev/null; then
  shellcheck "${scripts[@]}"
else
  echo "deploy-check: shellcheck unavailable; scripts checked with bash -n only" >&2
fi
echo "deploy-check: ok"
