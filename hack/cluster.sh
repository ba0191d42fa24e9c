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
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${CLUSTER_DIR:-/tmp/strongroom-cluster}
base=${BASE_PORT:-3000}

api_port() { echo $((base + $1 - 1)); }
peer_port() { echo $((base + 100 + $1 - 1)); }

# curl against node $1 with the root token: METHOD PATH [BODY]
call() {
  local node=$1 method=$2 path=$3 body=${4:-}
  curl -s -X "$method" -H "X-Bunker-Token: $(cat "$dir/root-token")" -H "Content-Type: application/json" \
    ${body:+-d "$body"} "http://127.0.0.1:$(api_port "$node")$path"
}

wait_for_line() { # FILE PATTERN
  for _ in $(seq 1 300); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "cluster.sh: timed out waiting for '$2' in $1" >&2
  exit 1
}

up() {
  local n=${1:?usage: cluster.sh up N}
  [ ! -e "$dir/pids" ] || { echo "cluster.sh: a cluster is already up in $dir (cluster.sh down first)" >&2; exit 1; }
  local vaultd=${VAULTD:-}
  if [ -z "$vaultd" ]; then
    cargo build --release --locked -p vaultd >&2
    vaultd=$PWD/target/release/vaultd
  fi
  mkdir -p "$dir"
  umask 077
  eval "$(hack/softhsm-token.sh "$dir/hsm")"
  head -c 24 /dev/urandom | base64 | tr -d '\n' >"$dir/root-token"
  head -c 24 /dev/urandom | base64 | tr -d '\n' >"$dir/peer-secret"
  for i in $(seq 1 "$n"); do
    local create=()
    [ "$i" = 1 ] && create=(--hsm-create-key)
    "$vaultd" serve --data-dir "$dir/node$i" --root-token-file "$dir/root-token" \
      --listen "127.0.0.1:$(api_port "$i")" --peer-listen "127.0.0.1:$(peer_port "$i")" \
      --peer-secret-file "$dir/peer-secret" "${create[@]}" >"$dir/node$i.out" 2>"$dir/node$i.log" &
    echo $! >>"$dir/pids"
    wait_for_line "$dir/node$i.out" "vaultd listening on"
  done
  call 1 POST /v1/sys/cluster/init '{}' >/dev/null
  for i in $(seq 2 "$n"); do
    local answer id
    answer=$(call 1 POST /v1/sys/cluster/learners \
      "{\"raftAddress\":\"127.0.0.1:$(peer_port "$i")\",\"apiAddress\":\"http://127.0.0.1:$(api_port "$i")\"}")
    id=$(echo "$answer" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
    [ -n "$id" ] || { echo "cluster.sh: adding node $i failed: $answer" >&2; exit 1; }
    for _ in $(seq 1 300); do
      call 1 POST "/v1/sys/cluster/members/$id/promote" '{}' | grep -q '"status":"ok"' && break
      sleep 0.1
    done
  done
  echo "Strongroom cluster of $n nodes (logs in $dir):"
  for i in $(seq 1 "$n"); do echo "  node $i: http://127.0.0.1:$(api_port "$i")"; done
  echo "root token: $(cat "$dir/root-token")"
}

down() {
  if [ -e "$dir/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$dir/pids"
    while read -r pid; do
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done <"$dir/pids"
  fi
  rm -rf "$dir"
  echo "cluster.sh: stopped"
}

case ${1:-} in
  up) up "${2:-3}" ;;
  down) down ;;
  status) call 1 GET /v1/sys/cluster; echo ;;
  *) echo "usage: cluster.sh up N | status | down" >&2; exit 2 ;;
esac
