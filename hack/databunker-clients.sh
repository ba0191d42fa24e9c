#!/usr/bin/env bash
# Installs Databunker's published Node.js clients for vaultd/tests/databunker_clients.rs
# into vaultd/tests/databunker-clients/node_modules: axios, express-session and uuid with
# npm (versions in the lock file), then @databunker/store and @databunker/session-store
# unpacked from `npm pack` after checking their digests, because npm cannot install them
# (each depends on the placeholder package http@0.0.1-security). Does nothing when they
# are there already.
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/vaultd/tests/databunker-clients"
declare -A versions=([store]=1.0.8 [session-store]=1.0.7)
# SHA-512 of each packed tarball, as the registry publishes it (`npm view ... dist.integrity`).
declare -A sha512=(
  [store]=73d30bef759d25e13560db4a603a2dc48cd2b98447e2575f0932dcda3024b34e6a4162fdaef89a5cf7bd71e3dfbea0615d28e349fae546be542fde68f7d784e0
  [session-store]=76fd16fda0852f553ce83ebf251632a1207875369e93e0c67afb0eb4559c7fdc8a4a40fc233c033a85533ab1e9a61733a0ee2d83bdb546d81b9eb88aa0b33b75
)

installed() {
  for package in "${!versions[@]}"; do
    local manifest="$dir/node_modules/@databunker/$package/package.json"
    grep -q "\"version\": \"${versions[$package]}\"" "$manifest" 2>/dev/null || return 1
  done
  [ -d "$dir/node_modules/express-session" ]
}
installed && exit 0

if ! command -v npm >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
cd "$dir"
npm ci --no-audit --no-fund --silent
packed="$(mktemp -d)"
trap 'rm -rf "$packed"' EXIT
for package in "${!versions[@]}"; do
  (cd "$packed" && npm pack --silent "@databunker/$package@${versions[$package]}" >/dev/null)
  tarball="$packed/databunker-$package-${versions[$package]}.tgz"
  echo "${sha512[$package]}  $tarball" | sha512sum --check --quiet -
  mkdir -p "node_modules/@databunker/$package"
  tar xzf "$tarball" -C "node_modules/@databunker/$package" --strip-components=1
done
installed
