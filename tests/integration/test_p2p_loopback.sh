#!/usr/bin/env bash
# natkit listen / connect on loopback through a natkit hub: a connection by
# peer ID, messages both ways, JSON events, a clean close at the end of
# stdin, an unknown peer (exit 1) and usage errors (exit 2).
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init p2p_loopback
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}

port=$(nk_free_port 1)
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$port"
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start"

nk_keygen a b c

# Each side reads stdin from a FIFO this script writes, so it decides when lines arrive
# and when stdin ends. The script opens the writing end only after starting the reader
# (the open waits for it), so no other process inherits a writer and EOF is real.
mkfifo "$NK_TMP/l.in" "$NK_TMP/c.in"

common=(--hub "127.0.0.1:$port" --bind 127.0.0.1:0 --json)
nk_start listen "$NK_TMP/listen.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/l.in" \
	"$NATKIT" listen "${common[@]}" --key "$NK_TMP/a.key"
exec {lfd}>"$NK_TMP/l.in"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"registered"' 10 || nk_fail "listener did not register"
grep -q '"event":"started"' "$NK_TMP/listen.log" || nk_fail "no started event"
id=$(grep -o '"event":"started","id":"[a-z2-7]*"' "$NK_TMP/listen.log" | sed 's/.*"id":"//; s/"$//')
[ ${#id} -eq 52 ] || nk_fail "listener's peer ID is not 52 characters: '$id'"

nk_start connect "$NK_TMP/connect.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/c.in" \
	"$NATKIT" connect "$id" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
exec {cfd}>"$NK_TMP/c.in"
nk_wait_for_log "$NK_TMP/connect.log" '"event":"connected"' 20 || nk_fail "connector did not connect"
ev=$NK_MATCH
nk_wait_for_log "$NK_TMP/listen.log" '"event":"connected"' 10 || nk_fail "listener did not see the connection"
[ "$(nk_json_get "$ev" path)" = direct ] || nk_fail "expected a direct path on loopback: $ev"
case "$(nk_json_get "$ev" remote)" in 127.0.0.1:*) ;; *) nk_fail "remote is not the listener's loopback address: $ev" ;; esac
nk_log "connected: $ev"

echo "hello from connector" >&$cfd
nk_wait_for_log "$NK_TMP/listen.log" '^hello from connector$' 10 || nk_fail "listener did not print the connector's line"
echo "hello from listener" >&$lfd
nk_wait_for_log "$NK_TMP/connect.log" '^hello from listener$' 10 || nk_fail "connector did not print the listener's line"

# End of the connector's stdin: it waits for the acknowledgement, closes, exits 0.
exec {cfd}>&-
nk_wait_for_log "$NK_TMP/connect.log" '^\[nk\] connect exited with status' 15 || nk_fail "connector did not exit at EOF"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "connector: $NK_MATCH"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"disconnected"' 10 || nk_fail "listener was not told about the close"

# A peer that is not at the hub: a clear failure, exit 1.
unknown=$("$NATKIT" keygen --out "$NK_TMP/d.key" 2>/dev/null | tail -1)
out=$("$NATKIT" connect "$unknown" "${common[@]}" --key "$NK_TMP/c.key" --timeout 5 </dev/null 2>&1)
rc=$?
[ $rc -eq 1 ] || nk_fail "connect to an unknown peer: exit $rc, want 1: $out"
echo "$out" | grep -q 'not registered' || nk_fail "no clear reason for the unknown peer: $out"

# Usage errors: exit 2 with a reason.
"$NATKIT" connect not-a-peer-id --hub "127.0.0.1:$port" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || nk_fail "bad peer ID: exit $rc, want 2"
"$NATKIT" listen --bogus >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || nk_fail "bad flag: exit $rc, want 2"
"$NATKIT" listen >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || nk_fail "no hub: exit $rc, want 2"

nk_stop listen
nk_pass "listen/connect on loopback: direct, both directions, clean close, unknown peer, usage errors"
