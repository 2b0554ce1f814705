#!/usr/bin/env bash
# A hub cluster on a real redis-server (loopback, a port of its own, no persistence):
# hubs A and B with --redis. A listener at A and a connector at B connect (direct path)
# and move a random file byte-identical; bench/hub_cluster_probe checks signalling,
# byte-identical RELAY frames and "unknown peer" across the hubs (the CLI has no way to
# force the hub-relay path on loopback, so the relay is checked at the frame level);
# the same ID registered at B pushes it out of A and the directory names B; kill -9 of
# B lets its entry expire; with Redis down the hubs keep serving their own peers and
# claim them again when it is back; SIGTERM gives the IDs back; three hubs: a listener at hub 1
# with all three in its --hub list is registered again within 10 s of kill -9 of hub 1 and reached
# through hub 3; backpressure across hubs: with Redis paused, a burst of 1,500 signalling frames
# fills hub C's forward queue and its sender (plain TCP, then TLS) is paused instead of told
# "unknown peer", and every frame arrives in order; a Redis that hangs (CLIENT PAUSE ALL) is declared
# away after the hub's requests waited 3 s unanswered, and rejoined. A hub without --redis:
# test_hub.sh and test_p2p_loopback.sh.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init hub_cluster
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
PROBE=$NK_BUILD_DIR/hub_cluster_probe
[ -x "$PROBE" ] || nk_fail "hub_cluster_probe not found at $PROBE"
command -v redis-server >/dev/null 2>&1 || nk_skip "redis-server not installed (scripts/deps.sh)"
nk_require redis-cli cmp openssl

rport=$(nk_free_port 1)
start_redis() {
	nk_redis_start redis "$rport" "$NK_TMP"
	[ "$(redis-cli -p "$rport" ping)" = PONG ] || nk_fail "redis-server does not answer PING"
}
rcli() { redis-cli -p "$rport" "$@"; }
# Polls a Redis answer until it is what we want, for up to $3 seconds (the event: a key moved or expired).
wait_redis() {
	local want=$1 secs=$2 deadline
	shift 2
	deadline=$(( ${EPOCHREALTIME//[.,]/} + secs * 1000000 ))
	while [ "$(rcli "$@")" != "$want" ]; do
		[ "${EPOCHREALTIME//[.,]/}" -lt $deadline ] || return 1
		sleep 0.1
	done
}
start_redis

hport=$(nk_free_port 2)
A=127.0.0.1:$hport
B=127.0.0.1:$((hport + 1))
nk_start hubA "$NK_TMP/hubA.log" "$NATKIT" hub --listen "$A" --redis "127.0.0.1:$rport" --redis-ttl 2
nk_start hubB "$NK_TMP/hubB.log" "$NATKIT" hub --listen "$B" --redis "127.0.0.1:$rport" --redis-ttl 2
for h in A B; do
	nk_wait_for_log "$NK_TMP/hub$h.log" 'cluster: redis .* connected \(hub id [0-9a-f]{16}\)' 10 ||
		nk_fail "hub $h did not join the cluster"
	declare "id$h=$(echo "$NK_MATCH" | sed -E 's/.*hub id ([0-9a-f]{16}).*/\1/')"
done
[ "$idA" != "$idB" ] || nk_fail "two hubs with one instance ID: $idA"
# (the hub logs "connected" and then sends its announcement: waited for, not looked at once)
wait_redis "$A" 5 get "natkit:hub:$idA" || nk_fail "hub A is not announced at natkit:hub:$idA"
[ "$(rcli pubsub numsub "natkit:hub:$idB:frames" | tail -1)" = 1 ] || nk_fail "hub B does not listen on its channel"

nk_keygen a b c

# 1. listener at A, connector at B: connected, and a random file arrives byte-identical.
head -c 1000000 /dev/urandom >"$NK_TMP/send.bin"
nk_start listen "$NK_TMP/listen.log" bash -c 'exec "$@" >"$0"' "$NK_TMP/recv.bin" \
	"$NATKIT" listen --hub "$A" --bind 127.0.0.1:0 --json --key "$NK_TMP/a.key"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"registered"' 10 || nk_fail "listener did not register at A"
lid=$(grep -o '"event":"started","id":"[a-z2-7]*"' "$NK_TMP/listen.log" | sed 's/.*"id":"//; s/"$//')
[ "$(rcli get "natkit:peer:$lid")" = "$idA" ] || nk_fail "the directory does not name hub A for the listener"
out=$("$NATKIT" connect "$lid" --hub "$B" --bind 127.0.0.1:0 --json --key "$NK_TMP/b.key" --timeout 20 \
	<"$NK_TMP/send.bin" 2>&1 >/dev/null)
rc=$?
[ $rc -eq 0 ] || nk_fail "connect through hub B to a listener at hub A: exit $rc: $out"
echo "$out" | grep -q '"event":"connected".*"path":"direct"' || nk_fail "no direct connection: $out"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"disconnected"' 10 || nk_fail "listener did not see the end"
cmp -s "$NK_TMP/send.bin" "$NK_TMP/recv.bin" || nk_fail "the file did not arrive byte-identical across hubs"
nk_log "listen at A, connect at B: direct, 1 MB byte-identical"

# 2. frames across the hubs: signalling, 400 relay packets byte-identical, unknown peer.
json=$("$PROBE" --hub-a "$A" --hub-b "$B" -n 50 --relay 400 --timeout 20) || nk_fail "hub_cluster_probe: $json"
[ "$(nk_json_get "$json" ok)" = true ] || nk_fail "hub_cluster_probe: $json"
[ "$(nk_json_get "$json" relay_ok)" = 400 ] || nk_fail "relay packets lost across hubs: $json"
nk_log "probe A<->B: $json"

# 3. an ID registered nowhere: a clear "not registered" from hub B.
ghost=$("$NATKIT" keygen --out "$NK_TMP/ghost.key" 2>/dev/null | tail -1)
out=$("$NATKIT" connect "$ghost" --hub "$B" --bind 127.0.0.1:0 --key "$NK_TMP/c.key" --timeout 5 </dev/null 2>&1)
rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q 'not registered' || nk_fail "unknown peer through the cluster: exit $rc: $out"

# 4. the listener's ID registers at B too: the newest wins, A drops it, the directory names B.
nk_start listen2 "$NK_TMP/listen2.log" "$NATKIT" listen --hub "$B" --bind 127.0.0.1:0 --json --key "$NK_TMP/a.key"
nk_wait_for_log "$NK_TMP/listen2.log" '"event":"registered"' 10 || nk_fail "second listener did not register at B"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"hub-closed".*replaced by a newer registration' 10 ||
	nk_fail "hub A kept the older registration"
[ "$(rcli get "natkit:peer:$lid")" = "$idB" ] || nk_fail "the directory does not name hub B after the move"
out=$("$NATKIT" connect "$lid" --hub "$A" --bind 127.0.0.1:0 --json --key "$NK_TMP/c.key" --timeout 20 \
	</dev/null 2>&1 >/dev/null)
echo "$out" | grep -q '"event":"connected"' || nk_fail "connect through A to the peer now at B: $out"

# 5. kill -9 hub B: nobody releases the entry; it expires with the TTL (2 s).
hubB_pid=$(ps -o pid= --ppid "${NK_PROCS[hubB]}" | tr -d ' ')
[ -n "$hubB_pid" ] || nk_fail "no hub B process under its wrapper"
kill -KILL "$hubB_pid"
nk_wait_for_log "$NK_TMP/hubB.log" '^\[nk\] hubB exited' 5 || nk_fail "hub B did not die"
nk_stop hubB
wait_redis "" 6 get "natkit:peer:$lid" || nk_fail "the dead hub's entry did not expire"
wait_redis "" 2 get "natkit:hub:$idB" || nk_fail "the dead hub's announcement did not expire"
out=$("$NATKIT" connect "$lid" --hub "$A" --bind 127.0.0.1:0 --key "$NK_TMP/c.key" --timeout 5 </dev/null 2>&1)
echo "$out" | grep -q 'not registered' || nk_fail "a peer of the dead hub still looks reachable: $out"
nk_stop listen2
nk_stop listen

# 6. Redis down: hub A says so once, serves its own peers, and claims them again when Redis is back.
nk_start listen3 "$NK_TMP/listen3.log" "$NATKIT" listen --hub "$A" --bind 127.0.0.1:0 --json --key "$NK_TMP/a.key"
nk_wait_for_log "$NK_TMP/listen3.log" '"event":"registered"' 10 || nk_fail "listener did not register at A"
nk_stop redis
nk_wait_for_log "$NK_TMP/hubA.log" 'cluster: redis .* unreachable' 10 || nk_fail "hub A did not notice Redis going"
out=$("$NATKIT" connect "$lid" --hub "$A" --bind 127.0.0.1:0 --json --key "$NK_TMP/c.key" --timeout 20 \
	</dev/null 2>&1 >/dev/null)
echo "$out" | grep -q '"event":"connected"' || nk_fail "hub A without Redis does not serve its own peers: $out"
[ "$(grep -c 'unreachable' "$NK_TMP/hubA.log")" = 1 ] || nk_fail "hub A logged Redis being away more than once"
start_redis
nk_wait_for_log "$NK_TMP/hubA.log" 'cluster: redis .* reconnected' 10 || nk_fail "hub A did not reconnect"
wait_redis "$idA" 5 get "natkit:peer:$lid" || nk_fail "hub A did not claim its peer again after Redis came back"

# 7. SIGTERM: hub A gives its IDs and its announcement back at once.
nk_stop hubA
[ -z "$(rcli get "natkit:peer:$lid")" ] || nk_fail "hub A left its peer's entry behind"
[ -z "$(rcli get "natkit:hub:$idA")" ] || nk_fail "hub A left its announcement behind"
nk_stop listen3

# 7b. backpressure across hubs (docs/internals/hub.md): Redis stops taking writes for 1.5 s while X
# at hub C sends 1,500 SIGNAL frames of 2,000 bytes to Y at hub D; more than the driver's 1 MiB in
# flight plus C's forward queue (256 KiB), so C pauses X (stops reading it) instead of answering
# "unknown peer"; every frame must arrive at Y in order and intact. Once over plain TCP, once over
# TLS. The default TTL (15 s), so no directory entry nor waiting frame expires during the pause.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$NK_TMP/key.pem" -out "$NK_TMP/cert.pem" >/dev/null 2>&1 ||
	nk_fail "(7b) openssl could not make a certificate"
hp7=$(nk_free_port 3)
C=127.0.0.1:$hp7
D=127.0.0.1:$((hp7 + 1))
CT=127.0.0.1:$((hp7 + 2))
nk_start hubC "$NK_TMP/hubC.log" "$NATKIT" hub --listen "$C" --tls-listen "$CT" --cert "$NK_TMP/cert.pem" \
	--key "$NK_TMP/key.pem" --redis "127.0.0.1:$rport"
nk_start hubD "$NK_TMP/hubD.log" "$NATKIT" hub --listen "$D" --redis "127.0.0.1:$rport"
for h in C D; do
	nk_wait_for_log "$NK_TMP/hub$h.log" 'cluster: redis .* connected \(hub id [0-9a-f]{16}\)' 10 ||
		nk_fail "(7b) hub $h did not join the cluster"
done
for via in tcp tls; do
	if [ $via = tcp ]; then hubc=(--hub-a "$C"); else hubc=(--hub-a "$CT" --tls-a "$NK_TMP/cert.pem"); fi
	json=$("$PROBE" "${hubc[@]}" --hub-b "$D" -n 5 --relay 0 --burst 1500 \
		--burst-cmd "redis-cli -p $rport client pause 1500 write >/dev/null" --timeout 60) ||
		nk_fail "(7b) burst over $via with Redis paused: $json"
	[ "$(nk_json_get "$json" burst_received)" = 1500 ] && [ "$(nk_json_get "$json" burst_bad)" = 0 ] &&
		[ "$(nk_json_get "$json" burst_unknown)" = false ] || nk_fail "(7b) burst over $via: $json"
	nk_log "(7b) burst over $via with Redis paused 1.5 s: $json"
done
nk_stop hubD
nk_stop hubC
grep -Eq 'stats .* unknown_peer=2 .* cluster_paused=[1-9][0-9]* cluster_expired=0 nomem_closed=0$' "$NK_TMP/hubC.log" ||
	nk_fail "(7b) hub C did not pause its sender, or answered more than the probes' two ghosts: $(grep stats "$NK_TMP/hubC.log")"
nk_log "(7b) hub C: $(grep -o 'cluster_forwarded=.*' "$NK_TMP/hubC.log")"

# 8. three hubs on one Redis (issue 13's test): a listener at hub 1 (--hub 1 --hub 2 --hub 3), a
# connector at hub 2: connected, lines both ways; kill -9 hub 1: the listener is registered again
# within 10 s (at hub 2 or 3, through its list) and a new connector, at hub 3, reaches it.
hp3=$(nk_free_port 3)
H1=127.0.0.1:$hp3
H2=127.0.0.1:$((hp3 + 1))
H3=127.0.0.1:$((hp3 + 2))
for i in 1 2 3; do
	eval "addr=\$H$i"
	nk_start "hub$i" "$NK_TMP/hub$i.log" "$NATKIT" hub --listen "$addr" --redis "127.0.0.1:$rport" --redis-ttl 2
	nk_wait_for_log "$NK_TMP/hub$i.log" 'cluster: redis .* connected \(hub id [0-9a-f]{16}\)' 10 ||
		nk_fail "hub $i did not join the cluster"
done
mkfifo "$NK_TMP/l3.in" "$NK_TMP/c3.in"
nk_start listen8 "$NK_TMP/listen8.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/l3.in" \
	"$NATKIT" listen --hub "$H1" --hub "$H2" --hub "$H3" --bind 127.0.0.1:0 --json --key "$NK_TMP/a.key"
exec {l3fd}>"$NK_TMP/l3.in"
nk_wait_for_log "$NK_TMP/listen8.log" '"event":"registered".*"hub":"'"$H1"'"' 10 || nk_fail "(8) listener did not register at hub 1"
nk_start chat8 "$NK_TMP/chat8.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/c3.in" \
	"$NATKIT" connect "$lid" --hub "$H2" --bind 127.0.0.1:0 --json --key "$NK_TMP/b.key" --timeout 20
exec {c3fd}>"$NK_TMP/c3.in"
nk_wait_for_log "$NK_TMP/chat8.log" '"event":"connected"' 20 || nk_fail "(8) connector at hub 2 did not reach the listener at hub 1"
echo "to the listener at hub 1" >&$c3fd
nk_wait_for_log "$NK_TMP/listen8.log" '^to the listener at hub 1$' 10 || nk_fail "(8) line to the listener lost"
echo "to the connector at hub 2" >&$l3fd
nk_wait_for_log "$NK_TMP/chat8.log" '^to the connector at hub 2$' 10 || nk_fail "(8) line to the connector lost"
exec {c3fd}>&-
nk_wait_for_log "$NK_TMP/chat8.log" '^\[nk\] chat8 exited with status' 15 || nk_fail "(8) connector did not end at EOF"

hub1_pid=$(ps -o pid= --ppid "${NK_PROCS[hub1]}" | tr -d ' ')
[ -n "$hub1_pid" ] || nk_fail "(8) no hub 1 process under its wrapper"
t0=${EPOCHREALTIME//[.,]/}
kill -KILL "$hub1_pid"
nk_wait_for_log "$NK_TMP/listen8.log" '"event":"registered".*"hub":"('"$H2|$H3"')"' 10 ||
	nk_fail "(8) the listener was not registered again within 10 s of kill -9 of hub 1"
ms=$(( (${EPOCHREALTIME//[.,]/} - t0) / 1000 ))
nk_log "(8) registered again $ms ms after kill -9: $NK_MATCH"
nk_stop hub1
printf 'from a new connector at hub 3\n' >"$NK_TMP/new8.txt"
out=$("$NATKIT" connect "$lid" --hub "$H3" --bind 127.0.0.1:0 --json --key "$NK_TMP/c.key" --timeout 20 \
	<"$NK_TMP/new8.txt" 2>&1 >/dev/null)
rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q '"event":"connected"' || nk_fail "(8) a new connector at hub 3 did not reach the listener: exit $rc: $out"
nk_wait_for_log "$NK_TMP/listen8.log" '^from a new connector at hub 3$' 10 || nk_fail "(8) the new connector's line did not arrive"
exec {l3fd}>&-
nk_stop listen8
nk_stop hub2
nk_stop hub3

# 9. Redis hangs without disconnecting (CLIENT PAUSE ALL: it accepts and reads, answers nothing): the
# hub declares it away once its requests have waited 3 s unanswered (forward_wait_ms = the TTL, 3 s;
# the directory refreshes every second, so something always waits), then reconnects when it answers.
hp9=$(nk_free_port 1)
E=127.0.0.1:$hp9
nk_start hubE "$NK_TMP/hubE.log" "$NATKIT" hub --listen "$E" --redis "127.0.0.1:$rport" --redis-ttl 3
nk_wait_for_log "$NK_TMP/hubE.log" 'cluster: redis .* connected \(hub id [0-9a-f]{16}\)' 10 ||
	nk_fail "(9) hub E did not join the cluster"
t0=${EPOCHREALTIME//[.,]/}
rcli client pause 9000 all >/dev/null || nk_fail "(9) CLIENT PAUSE refused"
nk_wait_for_log "$NK_TMP/hubE.log" 'cluster: redis .* unreachable \(no answer in 3000 ms\)' 8 ||
	nk_fail "(9) hub E did not notice Redis answering nothing: $(grep cluster: "$NK_TMP/hubE.log")"
ms=$(( (${EPOCHREALTIME//[.,]/} - t0) / 1000 ))
nk_wait_for_log "$NK_TMP/hubE.log" 'cluster: redis .* reconnected' 20 || nk_fail "(9) hub E did not reconnect"
nk_log "(9) hung Redis declared away after $ms ms, reconnected once it answered"
nk_stop hubE
nk_pass "two hubs on one Redis: connect across hubs (1 MB byte-identical), relay and unknown peer across hubs, newest registration wins, a dead hub's entries expire, Redis outage survived, IDs released at exit; backpressure across hubs (TCP and TLS) with Redis paused; three hubs: re-registered within 10 s of kill -9, reached through hub 3; a hung Redis declared away and reconnected"
