#!/usr/bin/env bash
# Clients that outlive their hubs (issue 13 item 1): listen re-registers after its hub is killed
# and restarted on the same port, and a new connect then reaches it (random bytes compared); an
# established direct pair moves lines while the hub is down; with two hubs and the first down,
# listen registers at the second; a --hub that is not a hub fails clearly within seconds (exit 1);
# a full hub (--max-peers 1) tells the second listener when to retry, and it registers once the
# first one left. No sleeps: every wait is for a log line, with a deadline.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init hub_reconnect
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
nk_require python3 cmp head

nk_keygen a b c d
peer_id() { grep -o '"event":"started","id":"[a-z2-7]*"' "$1" | head -1 | sed 's/.*"id":"//; s/"$//'; }

# ---- (1) + (2): hub killed and restarted on the same port --------------------------------
hp=$(nk_free_port 1)
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$hp"
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start"
mkfifo "$NK_TMP/l.in" "$NK_TMP/c.in"
common=(--hub "127.0.0.1:$hp" --bind 127.0.0.1:0 --json)
nk_start listen "$NK_TMP/listen.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/l.in" \
	"$NATKIT" listen "${common[@]}" --key "$NK_TMP/a.key" --control "$NK_TMP/listen.sock"
exec {lfd}>"$NK_TMP/l.in"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"registered"' 10 || nk_fail "listener did not register"
id=$(peer_id "$NK_TMP/listen.log")
[ ${#id} -eq 52 ] || nk_fail "no peer ID in the listener's log"

# an established direct pair (2)
nk_start chat "$NK_TMP/chat.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/c.in" \
	"$NATKIT" connect "$id" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
exec {cfd}>"$NK_TMP/c.in"
nk_wait_for_log "$NK_TMP/chat.log" '"event":"connected".*"path":"direct"' 20 || nk_fail "the pair did not connect directly"
echo "before the outage" >&$cfd
nk_wait_for_log "$NK_TMP/listen.log" '^before the outage$' 10 || nk_fail "line before the outage not delivered"

nk_stop hub
nk_wait_for_log "$NK_TMP/listen.log" '"event":"hub-lost"' 10 || nk_fail "listener did not report the lost hub"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"hub-reconnecting".*"delay_ms":[0-9]+' 10 || nk_fail "no hub-reconnecting event"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"hub-reconnecting".*Connection refused' 10 || nk_fail "no refused attempt while the hub was down"
echo "during the outage, to the listener" >&$cfd
nk_wait_for_log "$NK_TMP/listen.log" '^during the outage, to the listener$' 10 || nk_fail "(2) the direct pair stopped while the hub was down"
echo "during the outage, to the connector" >&$lfd
nk_wait_for_log "$NK_TMP/chat.log" '^during the outage, to the connector$' 10 || nk_fail "(2) no line back while the hub was down"
grep -q '"event":"disconnected"' "$NK_TMP/chat.log" && nk_fail "(2) the pair was disconnected by the hub outage"

# the status socket says "reconnecting" (no hub now; "registering" for the instant of a dial)
st=$("$NATKIT" status "$NK_TMP/listen.sock" --json 2>&1) || nk_fail "status of the listener failed: $st"
echo "$st" | grep -qE '"hub":\{"address":"127.0.0.1:'"$hp"'","state":"(reconnecting|registering)"' \
	|| nk_fail "status does not say reconnecting: $st"

# (redirections on a function call last for the call: the processes it starts lack them)
eval 'nk_start hub2 "$NK_TMP/hub2.log" "$NATKIT" hub --listen "127.0.0.1:$hp"' "$cfd>&- $lfd>&-"
nk_wait_for_log "$NK_TMP/hub2.log" 'listening' 10 || nk_fail "hub did not restart"
# the backoff (0.5 s doubling, +-25 %) brings it back within a few seconds of the restart
nk_wait_for_log "$NK_TMP/hub2.log" 'registered' 40 || nk_fail "(1) the listener did not register at the restarted hub"
# the second registered event (COUNT 2: the first, from before the outage, names the same hub; the
# hub's line above may be the connector's registration, and the listener logs its own after the reply)
nk_wait_for_log "$NK_TMP/listen.log" '"event":"registered".*"hub":"127.0.0.1:'"$hp"'"' 40 2 || nk_fail "(1) no second registered event"
echo "after the outage" >&$cfd
nk_wait_for_log "$NK_TMP/listen.log" '^after the outage$' 10 || nk_fail "line after the outage not delivered"
exec {cfd}>&-
nk_wait_for_log "$NK_TMP/chat.log" '^\[nk\] chat exited with status' 15 || nk_fail "connector did not end at EOF"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "(2) the connector that lived through the outage: $NK_MATCH"

# a fresh connect by ID reaches the re-registered listener and moves bytes (random, compared)
head -c 200000 /dev/urandom >"$NK_TMP/data.bin"
nk_start fresh "$NK_TMP/fresh.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/data.bin" \
	"$NATKIT" connect "$id" "${common[@]}" --key "$NK_TMP/c.key" --timeout 20
nk_wait_for_log "$NK_TMP/fresh.log" '^\[nk\] fresh exited with status' 30 || nk_fail "(1) the fresh connect did not finish"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "(1) fresh connect after the restart: $NK_MATCH"
exec {lfd}>&-
nk_stop listen
# the listener's stdout went to its log: the first 200000 bytes after the lines are the file
grep -c . "$NK_TMP/listen.log" >/dev/null
python3 - "$NK_TMP/listen.log" "$NK_TMP/data.bin" <<'PY' || nk_fail "(1) the bytes of the fresh connect differ"
import sys
log = open(sys.argv[1], 'rb').read(); data = open(sys.argv[2], 'rb').read()
sys.exit(0 if data in log else 1)
PY
nk_stop hub2

# ---- (3): two hubs, the first down at start -> registered at the second -------------------
pa=$(nk_free_port 1)
pb=$(nk_free_port 1)
while [ "$pb" = "$pa" ]; do pb=$(nk_free_port 1); done
nk_start hubb "$NK_TMP/hubb.log" "$NATKIT" hub --listen "127.0.0.1:$pb"
nk_wait_for_log "$NK_TMP/hubb.log" 'listening' 10 || nk_fail "hub B did not start"
nk_start two "$NK_TMP/two.log" "$NATKIT" listen --hub "127.0.0.1:$pa" --hub "127.0.0.1:$pb" \
	--bind 127.0.0.1:0 --json --key "$NK_TMP/d.key"
nk_wait_for_log "$NK_TMP/two.log" '"event":"registered".*"hub":"127.0.0.1:'"$pb"'"' 15 || nk_fail "(3) not registered at hub B"
grep -q '"event":"hub-reconnecting".*"hub":"127.0.0.1:'"$pb"'".*Connection refused' "$NK_TMP/two.log" \
	|| nk_fail "(3) hub A's refusal was not reported"
nk_stop two
nk_stop hubb

# ---- (4): --hub at ports that are not hubs: clear message, exit 1, within seconds ----------
ps=$(nk_free_port 1)
python3 - "$ps" >"$NK_TMP/fake.log" 2>&1 <<'PY' &
import socket, sys, threading
def serve(s, garbage):
    while True:
        c, _ = s.accept()
        if garbage:
            c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        threading.Timer(30, c.close).start()
silent = socket.socket(); silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
silent.bind(("127.0.0.1", int(sys.argv[1]))); silent.listen()
noisy = socket.socket(); noisy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
noisy.bind(("127.0.0.1", 0)); noisy.listen()
print("ready", noisy.getsockname()[1], flush=True)
threading.Thread(target=serve, args=(noisy, True), daemon=True).start()
serve(silent, False)
PY
fake=$!
trap 'rc=$?; kill $fake 2>/dev/null; (exit $rc); nk__cleanup' EXIT
nk_wait_for_log "$NK_TMP/fake.log" '^ready [0-9]+' 10 || nk_fail "fake servers did not start"
pn=${NK_MATCH#ready }
for case in "garbage:$pn:it sent \"HTTP/1.0 400" "silent:$ps:it sent no hub challenge within 5.0 s"; do
	IFS=: read -r what port want <<<"$case"
	t0=${EPOCHREALTIME//[.,]/}
	out=$(timeout 20 "$NATKIT" listen --hub "127.0.0.1:$port" --bind 127.0.0.1:0 --key "$NK_TMP/a.key" </dev/null 2>&1)
	rc=$?
	ms=$(( (${EPOCHREALTIME//[.,]/} - t0) / 1000 ))
	[ $rc -eq 1 ] || nk_fail "(4) $what: exit $rc, want 1: $out"
	echo "$out" | grep -qF "127.0.0.1:$port is not a natkit hub: $want" || nk_fail "(4) $what: no clear message: $out"
	[ $ms -lt 8000 ] || nk_fail "(4) $what: took $ms ms"
	nk_log "(4) $what: exit 1 in $ms ms: $(echo "$out" | tail -1)"
done
kill $fake 2>/dev/null

# ---- (5): a full hub says when to come back ------------------------------------------------
pf=$(nk_free_port 1)
nk_start hubf "$NK_TMP/hubf.log" "$NATKIT" hub --listen "127.0.0.1:$pf" --max-peers 1
nk_wait_for_log "$NK_TMP/hubf.log" 'listening' 10 || nk_fail "full hub did not start"
nk_start first "$NK_TMP/first.log" "$NATKIT" listen --hub "127.0.0.1:$pf" --bind 127.0.0.1:0 --json --key "$NK_TMP/a.key"
nk_wait_for_log "$NK_TMP/first.log" '"event":"registered"' 10 || nk_fail "(5) first listener did not register"
nk_start second "$NK_TMP/second.log" "$NATKIT" listen --hub "127.0.0.1:$pf" --bind 127.0.0.1:0 --json --key "$NK_TMP/b.key"
nk_wait_for_log "$NK_TMP/second.log" '"event":"hub-reconnecting".*"reason":"hub full"' 10 || nk_fail "(5) second listener was not refused 'hub full'"
delay=$(nk_json_get "$NK_MATCH" delay_ms)
[ "$delay" -ge 5000 ] && [ "$delay" -le 6250 ] || nk_fail "(5) retry delay $delay ms is not the hub's hint (5000 + 0-25 %)"
nk_stop first
nk_wait_for_log "$NK_TMP/second.log" '"event":"registered"' 20 || nk_fail "(5) second listener did not register after the first left"
nk_stop second
nk_stop hubf
nk_pass "re-registered after a hub restart (fresh connect moved 200 kB), direct pair through the outage, second hub, non-hubs refused, full hub's hint"
