#!/usr/bin/env bash
# make demo: the main job, end to end on this machine.
#  1. a natkit STUN server on loopback (RFC 5780 mode on 127.0.0.1 + 127.0.0.2)
#     and `natkit discover` against it;
#  2. as root with network namespaces: a small NAT lab with real kernel NATs,
#     where `natkit discover` behind each NAT finds its public address and
#     `natkit nat-type` classifies the NAT (scripts/demo_lab.sh).
# (make demo runs it with sh; lib.sh needs bash)
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export NATKIT=${NATKIT:-$root/build/natkit}
. "$root/tests/lib.sh"
nk_init demo

echo "== natkit $("$NATKIT" --version | cut -d' ' -f2): STUN on loopback"
port=$(nk_free_port 2)
nk_start stun "$NK_TMP/stun.log" "$NATKIT" stun-server --listen "127.0.0.1:$port" --alt-ip 127.0.0.2
nk_wait_for_log "$NK_TMP/stun.log" 'listening' 10 || nk_fail "stun-server did not start"
echo "\$ $NATKIT stun-server --listen 127.0.0.1:$port --alt-ip 127.0.0.2"
echo "  $NK_MATCH"
echo "\$ natkit discover --stun 127.0.0.1:$port"
"$NATKIT" discover --stun "127.0.0.1:$port"
echo "\$ natkit discover --stun 127.0.0.1:$port --json"
"$NATKIT" discover --stun "127.0.0.1:$port" --json
nk_stop stun || true

if [ "$(id -u)" -ne 0 ] || [ ! -f "$root/scripts/demo_lab.sh" ] || ! ip netns list >/dev/null 2>&1; then
	echo "(the NAT lab part of the demo needs root and network namespaces; skipped)"
	exit 0
fi
echo
echo "== behind real NATs (network namespaces + nftables)"
bash "$root/scripts/demo_lab.sh"
