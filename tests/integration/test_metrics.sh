#!/usr/bin/env bash
# --metrics on the three servers, on loopback: each one's /metrics is scraped with curl while load
# runs (stun_load; turn-check through a turnutils_peer echo; hub_load's relay flood and a
# listen/connect pair) and every scrape must pass Prometheus's own `promtool check metrics`
# (exit 0). The counters must have moved by what the load did: STUN requests >= the answers the
# load tool got, a datagram that is not STUN counted as dropped; a live TURN allocation while
# turn-check runs, every echoed packet relayed both ways, the 401 challenge and a bad password
# counted; the hub holding exactly the 2 peers of a listen/connect pair, both ends' reports of a
# direct connection, the connect-time histogram, relay frames and bytes from hub_load. Also: IPv6
# ([::1]) and turn-server's metrics= config line, a metrics port in use (exit 1, the address and
# the system error named), a bad --metrics value (exit 2), 404 and 405.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init metrics
NK_BUILD_DIR=${NK_BUILD_DIR:-$NK_SOURCE_DIR/build}
NATKIT=${NATKIT:-$NK_BUILD_DIR/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit not found at $NATKIT"
for t in stun_load hub_load; do [ -x "$NK_BUILD_DIR/$t" ] || nk_fail "$t not found in $NK_BUILD_DIR"; done
nk_require curl promtool turnutils_peer
. "$NK_SOURCE_DIR/tests/integration/turn_check_lib.sh"

SCRAPES=0
# scrape URL OUT: GET the metrics into OUT; promtool check metrics must exit 0 on them.
scrape() {
	local url=$1 out=$2
	curl -sSf --max-time 10 -o "$out" "$url" 2>"$NK_TMP/curl.err" || nk_fail "GET $url failed: $(cat "$NK_TMP/curl.err")"
	promtool check metrics <"$out" >"$NK_TMP/promtool.out" 2>&1 ||
		nk_fail "promtool check metrics rejects $url: $(cat "$NK_TMP/promtool.out")"
	SCRAPES=$((SCRAPES + 1))
}

# value FILE SERIES: the value of one series ('name' or 'name{label="v"}'); fails when absent.
value() {
	local v
	v=$(awk -v s="$2" '$1 == s { print $2; found = 1 } END { exit !found }' "$1") || nk_fail "no series $2 in $1"
	printf '%s\n' "$v"
}

# at_least FILE SERIES MIN
at_least() {
	local v
	v=$(value "$1" "$2")
	[ "${v%.*}" -ge "$3" ] || nk_fail "$2 is $v, want at least $3 ($1)"
}

# metrics_url LOG: the URL the server logged.
metrics_url() {
	nk_wait_for_log "$1" 'metrics on http://[^ ]*/metrics' 10 || nk_fail "no metrics line in $1"
	grep -o 'http://[^ ]*/metrics' <<<"$NK_MATCH"
}

# running NAME: the load NAME still runs (so the scrape happened under load).
running() {
	! grep -q '^\[nk\] .* exited with status' "$NK_TMP/$1.log"
}

# ---- STUN ----
port=$(nk_free_port 2)
nk_start stun "$NK_TMP/stun.log" "$NATKIT" stun-server --listen 127.0.0.1:$port --threads 2 --udp-rate 0 --metrics 127.0.0.1:0
url=$(metrics_url "$NK_TMP/stun.log")
nk_wait_for_log "$NK_TMP/stun.log" 'listening on' 10 || nk_fail "stun-server did not start"
scrape "$url" "$NK_TMP/stun0.txt"
[ "$(value "$NK_TMP/stun0.txt" natkit_stun_requests_total)" = 0 ] || nk_fail "requests before any load"

printf 'not a STUN message' >/dev/udp/127.0.0.1/$port
nk_start stun_load "$NK_TMP/stun_load.log" "$NK_BUILD_DIR/stun_load" --server 127.0.0.1:$port --duration 3 \
	--warmup 0.2 --sockets 4 --window 4 --timeout-ms 2000 --json
under=0
for ((i = 0; i < 200 && under == 0; i++)); do # scrape until the counter moved, the load still running
	scrape "$url" "$NK_TMP/stun1.txt"
	running stun_load || break
	[ "$(value "$NK_TMP/stun1.txt" natkit_stun_requests_total)" -gt 0 ] && under=1
done
[ $under = 1 ] || nk_fail "the STUN requests counter did not move while stun_load ran"
nk_wait_for_log "$NK_TMP/stun_load.log" '^\[nk\] stun_load exited' 30 || nk_fail "stun_load did not end"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "stun_load: $NK_MATCH"
json=$(grep '^{' "$NK_TMP/stun_load.log")
ok=$(nk_json_get "$json" ok) || nk_fail "bad stun_load output: $json"
scrape "$url" "$NK_TMP/stun2.txt"
at_least "$NK_TMP/stun2.txt" natkit_stun_requests_total "$ok"
at_least "$NK_TMP/stun2.txt" 'natkit_stun_responses_total{result="success"}' "$ok"
at_least "$NK_TMP/stun2.txt" 'natkit_stun_dropped_total{reason="not_stun"}' 1
nk_log "stun: $ok answers to stun_load; $(value "$NK_TMP/stun2.txt" natkit_stun_requests_total) requests counted"

# The metrics port in use: exit 1 at start, naming the address and the system error.
mport=$(sed -E 's|http://127\.0\.0\.1:([0-9]+)/metrics|\1|' <<<"$url")
port2=$(nk_free_port 2)
out=$("$NATKIT" stun-server --listen 127.0.0.1:$port2 --metrics 127.0.0.1:$mport 2>&1 </dev/null)
rc=$?
[ $rc = 1 ] || nk_fail "metrics port in use: exit $rc, want 1: $out"
grep -q "cannot serve metrics on 127.0.0.1:$mport: Address already in use" <<<"$out" ||
	nk_fail "metrics port in use: no address and system error: $out"
out=$("$NATKIT" stun-server --listen 127.0.0.1:$port2 --metrics localhost:x 2>&1 </dev/null)
rc=$?
[ $rc = 2 ] && grep -q -- "--metrics" <<<"$out" || nk_fail "bad --metrics value: exit $rc, want 2: $out"
code=$(curl -s -o /dev/null -w '%{http_code}' "${url%/metrics}/")
[ "$code" = 404 ] || nk_fail "GET / answered $code, want 404"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url")
[ "$code" = 405 ] || nk_fail "POST /metrics answered $code, want 405"
nk_stop stun || nk_fail "stun-server did not exit 0 on SIGTERM"

# ---- TURN ----
COUNT=400
port=$(nk_free_port 2)
peer_port=$(nk_free_port 1)
relay_lo=$(nk_free_port 64)
relay_hi=$((relay_lo + 63))
nk_turn_echo_peer "$peer_port"
printf 'realm=natkit.test\nuser=alice:s3cret\nmetrics=127.0.0.1:0  \n' >"$NK_TMP/turn.conf"
nk_start turn "$NK_TMP/turn.log" "$NATKIT" turn-server --listen 127.0.0.1:$port --relay-ip 127.0.0.1 \
	--relay-ports "$relay_lo-$relay_hi" --allow-peer 127.0.0.1/32 --config "$NK_TMP/turn.conf"
url=$(metrics_url "$NK_TMP/turn.log")
nk_wait_for_log "$NK_TMP/turn.log" 'listening on' 10 || nk_fail "turn-server did not start"
nk_start turn_check "$NK_TMP/turn_check.log" "$NATKIT" turn-check --turn 127.0.0.1:$port --user alice --pass s3cret \
	--peer 127.0.0.1:$peer_port --count $COUNT --interval 5 --json
under=0
for ((i = 0; i < 400 && under == 0; i++)); do # a live allocation, seen while turn-check runs
	scrape "$url" "$NK_TMP/turn1.txt"
	running turn_check || break
	[ "$(value "$NK_TMP/turn1.txt" natkit_turn_allocations)" = 1 ] &&
		[ "$(value "$NK_TMP/turn1.txt" 'natkit_turn_relayed_packets_total{direction="to_peer"}')" -gt 0 ] && under=1
done
[ $under = 1 ] || nk_fail "no live allocation and relayed packets seen while turn-check ran"
nk_wait_for_log "$NK_TMP/turn_check.log" '^\[nk\] turn_check exited' 60 || nk_fail "turn-check did not end"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "turn-check: $NK_MATCH"
check_refused "wrong password" '401' --turn 127.0.0.1:$port --user alice --pass nope --peer 127.0.0.1:$peer_port
scrape "$url" "$NK_TMP/turn2.txt"
t=$NK_TMP/turn2.txt
at_least "$t" natkit_turn_allocations_created_total 1
at_least "$t" 'natkit_turn_relayed_packets_total{direction="to_peer"}' $COUNT
at_least "$t" 'natkit_turn_relayed_packets_total{direction="to_client"}' $COUNT
at_least "$t" 'natkit_turn_relayed_bytes_total{direction="to_peer"}' $COUNT
at_least "$t" 'natkit_turn_relayed_bytes_total{direction="to_client"}' $COUNT
at_least "$t" 'natkit_turn_allocate_errors_total{code="401"}' 1
at_least "$t" 'natkit_turn_auth_failures_total{reason="bad_credentials"}' 1
perms=$(( $(value "$t" natkit_turn_permissions_created_total) + $(value "$t" natkit_turn_channel_binds_total) ))
[ $perms -ge 1 ] || nk_fail "no permission or channel counted"
nk_log "turn: $(value "$t" 'natkit_turn_relayed_packets_total{direction="to_peer"}') packets relayed to the peer"
nk_stop turn_check
nk_stop turn || nk_fail "turn-server did not exit 0 on SIGTERM"

# ---- hub ----
port=$(nk_free_port 1)
if ip -6 addr show dev lo 2>/dev/null | grep -q '::1/128'; then maddr='[::1]:0'; else maddr=127.0.0.1:0; fi
nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen 127.0.0.1:$port --metrics "$maddr" --quiet
url=$(metrics_url "$NK_TMP/hub.log")
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start"
nk_log "hub metrics at $url"

nk_start hub_load "$NK_TMP/hub_load.log" "$NK_BUILD_DIR/hub_load" --hub 127.0.0.1:$port -n 20 --relay-seconds 2
under=0
for ((i = 0; i < 400 && under == 0; i++)); do # relay frames counted while hub_load floods
	scrape "$url" "$NK_TMP/hub1.txt"
	running hub_load || break
	[ "$(value "$NK_TMP/hub1.txt" natkit_hub_relay_frames_total)" -gt 100 ] && under=1
done
[ $under = 1 ] || nk_fail "hub relay frames did not move while hub_load ran"
nk_wait_for_log "$NK_TMP/hub_load.log" '^\[nk\] hub_load exited' 60 || nk_fail "hub_load did not end"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "hub_load: $NK_MATCH"

nk_keygen a b
mkfifo "$NK_TMP/l.in" "$NK_TMP/c.in"
common=(--hub "127.0.0.1:$port" --bind 127.0.0.1:0 --json)
nk_start listen "$NK_TMP/listen.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/l.in" \
	"$NATKIT" listen "${common[@]}" --key "$NK_TMP/a.key"
exec {lfd}>"$NK_TMP/l.in"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"registered"' 10 || nk_fail "listener did not register"
id=$(grep -o '"event":"started","id":"[a-z2-7]*"' "$NK_TMP/listen.log" | sed 's/.*"id":"//; s/"$//')
nk_start connect "$NK_TMP/connect.log" bash -c 'exec "$@" <"$0"' "$NK_TMP/c.in" \
	"$NATKIT" connect "$id" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
exec {cfd}>"$NK_TMP/c.in"
nk_wait_for_log "$NK_TMP/connect.log" '"event":"connected"' 20 || nk_fail "connector did not connect"
[ "$(nk_json_get "$NK_MATCH" path)" = direct ] || nk_fail "expected a direct path on loopback: $NK_MATCH"
nk_wait_for_log "$NK_TMP/listen.log" '"event":"connected"' 10 || nk_fail "listener did not see the connection"
head -c 200000 /dev/urandom | base64 -w 76 >"$NK_TMP/lines.txt"
cat "$NK_TMP/lines.txt" >&$cfd &
writer=$!
seen=0
for ((i = 0; i < 400 && seen == 0; i++)); do # both ends' reports, scraped while the bytes flow
	scrape "$url" "$NK_TMP/hub2.txt"
	[ "$(value "$NK_TMP/hub2.txt" natkit_hub_reports_total)" -ge 2 ] && seen=1
done
[ $seen = 1 ] || nk_fail "the hub did not count both ends' reports"
h=$NK_TMP/hub2.txt
[ "$(value "$h" natkit_hub_peers)" = 2 ] || nk_fail "natkit_hub_peers is $(value "$h" natkit_hub_peers), want 2"
at_least "$h" 'natkit_hub_peer_connections_total{path="direct"}' 2
at_least "$h" natkit_hub_connect_time_seconds_count 2
at_least "$h" 'natkit_hub_connect_time_seconds_bucket{le="+Inf"}' 2
at_least "$h" 'natkit_hub_nat_mapping_reports_total{behaviour="unknown"}' 2
at_least "$h" natkit_hub_signalling_messages_total 2
at_least "$h" natkit_hub_registrations_total 22
at_least "$h" natkit_hub_relay_bytes_total 100000
wait $writer
exec {cfd}>&-
nk_wait_for_log "$NK_TMP/connect.log" '^\[nk\] connect exited with status' 30 || nk_fail "connector did not exit at EOF"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "connector: $NK_MATCH"
nk_log "hub: $(value "$h" natkit_hub_relay_frames_total) relay frames, connect time sum $(value "$h" natkit_hub_connect_time_seconds_sum) s"
nk_stop listen
nk_stop hub || nk_fail "hub did not exit 0 on SIGTERM"

nk_pass "$SCRAPES scrapes of stun-server, turn-server and hub under load pass promtool check metrics; counters match the load"
