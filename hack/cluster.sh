#!/usr/bin/env bash
# A local N-node Strongroom cluster on 127.0.0.1, one vaultd process per node, all
# sharing one throwaway SoftHSM token (as every pod of a real cluster shares one KEK).
#
#   hack/cluster.sh up 3      # start 3 nodes; prints each API URL and the root token
#   hack/cluster.sh status    # the leader's view of the members
#   hack/cluster.sh down      # stop every node and delete the cluster's files
#
# Node i (1-based) serves its API on 127.0.0.1:$((BASE_PORT + i - 1)) and Raft on
# 127.0.0.1:$((BASE_PORT + 100 + i - 1)). Environment: CLUSTER_DIR (default
# /tmp/strongroom-cluster), BASE_PORT (default 3000), VAULTD (default: build and use
# target/release/vaultd).
#
# The work is done by strongroom-testkit's local-cluster binary (testkit/src/bin/), built on
# the kit the tests and the bench form their clusters with.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = up ] && [ -z "${VAULTD:-}" ]; then
  cargo build --release --locked -p vaultd >&2
  export VAULTD=$PWD/target/release/vaultd
fi
# status and down use the binary `up` built.
if [ "${1:-}" = up ] || [ ! -x target/release/local-cluster ]; then
  cargo build --release --locked -q -p strongroom-testkit --bin local-cluster >&2
fi
umask 077
exec target/release/local-cluster "$@"
