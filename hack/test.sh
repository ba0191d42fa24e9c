#!/usr/bin/env bash
# The full test suite, runnable on a fresh machine: installs what the tests need
# (SoftHSM2 for the PKCS#11 tests; iproute2 and curl for the cluster test that cuts a
# node off in a network namespace, which needs root; Python for Schemathesis and for
# moto's S3 server, which the backup tests store backups in; promtool, from Debian's
# `prometheus` package, for the alert rules), then runs every test of the workspace,
# Schemathesis against a demo vault (hack/schemathesis.sh), the alert rules' checks
# (hack/check-alerts.sh) and the deployment checks.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v promtool >/dev/null || missing+=(prometheus)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# An S3-protocol server for the backup tests (pinned; installed into target/moto-venv).
moto=5.2.1
moto_venv=target/moto-venv
if ! "$moto_venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$moto')" 2>/dev/null; then
  rm -rf "$moto_venv"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto"
fi
export STRONGROOM_MOTO_SERVER="$PWD/$moto_venv/bin/moto_server"

cargo test --workspace --locked "$@"
bash hack/schemathesis.sh
bash hack/check-alerts.sh
bash hack/deploy-check.sh
