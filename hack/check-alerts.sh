#!/usr/bin/env bash
# Checks the vault alerts (charts/strongroom-operator/alerts): `promtool check rules` on the
# generated rules file and `promtool test rules` on its unit tests (every alert firing and
# not firing). hack/test.sh installs promtool (Debian's `prometheus` package) when missing.
set -euo pipefail
cd "$(dirname "$0")/../charts/strongroom-operator/alerts"

command -v promtool >/dev/null || { echo "check-alerts: promtool is missing (apt-get install prometheus)" >&2; exit 1; }
promtool check rules strongroom-alerts.yaml
promtool test rules strongroom-alerts.test.yaml
