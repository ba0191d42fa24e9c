#!/usr/bin/env bash
# Creates a throwaway SoftHSM2 token for development and tests, and prints the
# environment that points vaultd at it:
#
#   eval "$(hack/softhsm-token.sh /tmp/strongroom-hsm)"
#   vaultd serve --data-dir /tmp/vault --hsm-create-key ...
#
# Arguments: DIR (where the token lives; created) [TOKEN_LABEL] (default strongroom-dev).
# The PIN is random and written to DIR/user.pin (mode 0600); it never appears on a
# command line. Installs softhsm2 with apt-get when it is missing and we are root.
set -euo pipefail

dir=${1:?usage: softhsm-token.sh DIR [TOKEN_LABEL]}
label=${2:-strongroom-dev}

if ! command -v softhsm2-util >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq softhsm2) >&2
  else
    echo "softhsm2 is not installed (apt-get install softhsm2)" >&2
    exit 1
  fi
fi

module=""
for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  if [ -e "$candidate" ]; then module=$candidate; break; fi
done
[ -n "$module" ] || { echo "cannot find libsofthsm2.so" >&2; exit 1; }

mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
CONF
umask 077
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/user.pin"
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/so.pin"

# softhsm2-util only takes PINs as arguments; this throwaway token's PINs are random and
# the process lives for milliseconds. Production tokens are provisioned out of band.
SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label "$label" \
  --pin "$(cat "$dir/user.pin")" --so-pin "$(cat "$dir/so.pin")" >&2

cat <<ENV
export SOFTHSM2_CONF=$dir/softhsm2.conf
export VAULTD_HSM_MODULE=$module
export VAULTD_HSM_TOKEN_LABEL=$label
export VAULTD_HSM_PIN_FILE=$dir/user.pin
ENV
