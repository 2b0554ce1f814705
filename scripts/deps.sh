#!/bin/sh
# Installs the Debian packages natkit needs to build, test, fuzz and benchmark.
# Does nothing when everything is already there; needs root otherwise.
set -eu

pkgs="build-essential cmake clang pkg-config libssl-dev libsodium-dev libuv1-dev
      libcmocka-dev libclang-rt-dev coturn iproute2 nftables procps python3 openssl
      conntrack tcpdump libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev
      curl openssh-client openssh-server libmicrohttpd-dev prometheus
      libsqlite3-dev libhiredis-dev redis-server sqlite3 libpq-dev postgresql python3-cryptography
      systemd groff-base"

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing Debian packages:$missing (run as root to install them)" >&2
	exit 1
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
