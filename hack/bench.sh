#!/usr/bin/env bash
# The standard benchmark suite (PRODUCT.md §9, BENCHMARKS.md): builds release binaries,
# then measures a single vaultd node in demo and SoftHSM modes (and its memory after
# 100,000 subjects), a 3-node cluster (64 clients, then 256) with a leader kill -9, the
# trivial actix handler, and PostgreSQL + pgcrypto (default and un-iterated key
# derivation) when PostgreSQL is installed, and a retention run (minimisation) over
# 100,000 subjects of a 3-node cluster under get load, and prints tables.
#
#   hack/bench.sh                      # the standard suite, 10 s per workload
#   hack/bench.sh --duration 15        # extra arguments go to `strongroom-bench run`
#
# Every server runs on 127.0.0.1 with a port the kernel picks, and every run stops by
# itself. Installs softhsm2 with apt-get when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v softhsm2-util >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bench.sh: installing softhsm2" >&2
  (apt-get update -qq && apt-get install -y -qq softhsm2) >&2
fi

cargo build --release --locked -p vaultd -p strongroom-bench

targets=vaultd,trivial
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then
  targets=vaultd,trivial,postgres
else
  echo "bench.sh: PostgreSQL not installed; skipping the pgcrypto comparison" >&2
fi

target/release/strongroom-bench run \
  --targets "$targets" \
  --mode demo,softhsm,cluster \
  --workloads create,get,failover \
  --clients 64 \
  --duration 10 \
  --users 10000 \
  --subjects 100000 \
  --pgp-options '' --pgp-options 's2k-mode=1' \
  "$@"

# The cluster is latency-bound at 64 clients (each entry waits for a quorum's fsyncs);
# with more clients in flight each entry carries more requests.
target/release/strongroom-bench run --targets vaultd --mode cluster --workloads create,get \
  --clients 256 --duration 10 --users 10000 "$@"

# Minimisation: a retention run dropping `phone` from 100,000 subjects of a fresh 3-node
# cluster, with 64 get clients before (baseline) and during the run.
target/release/strongroom-bench run --targets vaultd --mode cluster --workloads minimize \
  --clients 64 --duration 10 --subjects 100000 "$@"
