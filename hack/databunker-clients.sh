#!/usr/bin/env bash
# Installs Databunker's published Node.js clients for vaultd/tests/databunker_clients.rs
# into vaultd/tests/databunker-clients/node_modules: axios, express-session and uuid with
# npm (versions in the lock file), then @databunker/store and @databunker/session-store
# unpacked from `npm pack`, because npm cannot install them (each depends on the
# placeholder package http@0.0.1-security). Does nothing when they are there already.
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/vaultd/tests/databunker-clients"
declare -A versions=([store]=1.0.8 [session-store]=1.0.7)

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
  mkdir -p "node_modules/@databunker/$package"
  tar xzf "$packed/databunker-$package-${versions[$package]}.tgz" -C "node_modules/@databunker/$package" --strip-components=1
done
installed
