#!/usr/bin/env bash
# natkit listen / connect over IPv6 loopback: a hub at [::1], both peers bound to [::1]
# (`--bind '[::1]:0'`, `--hub '[::1]:PORT'` parse and work), a direct path between IPv6
# addresses, lines both ways; and a dual-stack socket (`--bind '[::]:0'`) that registers
# at the hub over IPv6.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init p2p_ipv6
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}

python3 -c 'import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::1", 0))' 2>/dev/null ||
	nk_skip "no IPv6 loopback on this host"

port=$(nk_free_port 1)
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "[::1]:$port"
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start on [::1]:$port"

nk_keygen a b c
mkfifo "$NK_TMP/l.in" "$NK_TMP/c.in"

common=(--hub "[::1]:$port" --bind '[::1]:0' --json)
nk_start listen "$NK_TMP/listen.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/l.in" \
	"$NATKIT" listen "${common[@]}" --key "$NK_TMP/a.key"
exec {lfd}>"$NK_TMP/l.in"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"registered"' 10 || nk_fail "listener did not register at [::1]:$port"
id=$(grep -o '"event":"started","id":"[a-z2-7]*"' "$NK_TMP/listen.log" | sed 's/.*"id":"//; s/"$//')
[ ${#id} -eq 52 ] || nk_fail "listener's peer ID is not 52 characters: '$id'"

nk_start connect "$NK_TMP/connect.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/c.in" \
	"$NATKIT" connect "$id" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
exec {cfd}>"$NK_TMP/c.in"
nk_wait_for_log "$NK_TMP/connect.log" '"event":"connected"' 20 || nk_fail "connector did not connect over IPv6"
ev=$NK_MATCH
[ "$(nk_json_get "$ev" path)" = direct ] || nk_fail "expected a direct path on IPv6 loopback: $ev"
case "$(nk_json_get "$ev" remote)" in "[::1]:"*) ;; *) nk_fail "remote is not the listener's [::1] address: $ev" ;; esac
nk_log "connected: $ev"

echo "hello over ipv6" >&$cfd
nk_wait_for_log "$NK_TMP/listen.log" '^hello over ipv6$' 10 || nk_fail "listener did not print the connector's line"
echo "and back" >&$lfd
nk_wait_for_log "$NK_TMP/connect.log" '^and back$' 10 || nk_fail "connector did not print the listener's line"
exec {cfd}>&-
nk_wait_for_log "$NK_TMP/connect.log" '^\[nk\] connect exited with status' 15 || nk_fail "connector did not exit at EOF"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "connector: $NK_MATCH"

# One dual-stack socket: [::]:PORT, registered at the hub over IPv6.
nk_start dual "$NK_TMP/dual.log" "$NATKIT" listen --hub "[::1]:$port" --bind '[::]:0' --json --key "$NK_TMP/c.key"
nk_wait_for_log "$NK_TMP/dual.log" '"event":"registered"' 10 || nk_fail "dual-stack listener did not register"
grep '"event":"started"' "$NK_TMP/dual.log" | grep -q '"local":"\[::\]:[1-9]' ||
	nk_fail "dual-stack listener is not on [::]:PORT: $(grep '"event":"started"' "$NK_TMP/dual.log")"

nk_stop dual
nk_stop listen
nk_pass "listen/connect over IPv6 loopback: hub at [::1], direct between [::1] addresses, lines both ways; [::]:0 dual stack registers"
