#!/usr/bin/env bash
# The full test suite, runnable on a fresh machine: installs what the tests need
# (SoftHSM2 for the PKCS#11 tests), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v softhsm2-util >/dev/null; then
  echo "test.sh: installing softhsm2" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq softhsm2 >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq softhsm2 >/dev/null
  fi
fi

cargo test --workspace --locked "$@"
bash hack/deploy-check.sh
