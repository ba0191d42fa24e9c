#!/usr/bin/env bash
# The full test suite, runnable on a fresh machine: installs what the tests need
# (SoftHSM2 for the PKCS#11 tests; iproute2 and curl for the cluster test that cuts a
# node off in a network namespace, which needs root), then runs every test of the
# workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --workspace --locked "$@"
bash hack/deploy-check.sh
