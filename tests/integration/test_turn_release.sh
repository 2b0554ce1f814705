#!/usr/bin/env bash
# natkit connect / listen give their TURN allocation back when they exit (nk_node_release_turn,
# waited for up to 1 s), on loopback through natkit's turn-server and a hub:
# - connect carries a random file byte-identical and exits 0; its allocation is gone from the
#   server when it has exited (natkit_turn_allocations: listen's only);
# - listen, stopped (SIGINT) after its nonce went stale (turn-server --stale-nonce 1), is
#   answered 438, renews the nonce and releases: no live allocation is left, and the 438 is
#   counted. Before, the release was one datagram sent without reading the answer: the 438
#   left the allocation on the server for its lifetime (10 min here).
# - the same against coturn (--stale-nonce=1, --user-quota=2), when it is installed: a second
#   connect/listen pair gets its allocations (coturn answers 486 Allocation Quota Reached to a
#   user whose two earlier allocations were not released, and connect says so). coturn deletes
#   a released allocation about 1 s after the Refresh: the test waits for its log line.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init turn_release
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
nk_require cmp curl

turn_port=$(nk_free_port 2)
hub_port=$(nk_free_port 1)
relay_lo=$(nk_free_port 32)
relay_hi=$((relay_lo + 31))

# value FILE SERIES: a series' value in a scrape
value() {
	awk -v s="$2" '$1 == s { print $2; found = 1 } END { exit !found }' "$1" || nk_fail "no series $2 in $1"
}
scrape() {
	curl -sSf --max-time 10 -o "$2" "$1" 2>"$NK_TMP/curl.err" || nk_fail "GET $1 failed: $(cat "$NK_TMP/curl.err")"
}

nk_start hub "$NK_TMP/hub.log" "$NATKIT" hub --listen "127.0.0.1:$hub_port"
nk_wait_for_log "$NK_TMP/hub.log" 'listening' 10 || nk_fail "hub did not start"
nk_keygen a b
head -c 200000 /dev/urandom >"$NK_TMP/up.bin"

# pair NAME TURN_PORT: listen (a.key) and connect (b.key) with TURN; connect carries up.bin and
# exits 0, listen keeps running (NK_PROCS[NAME_l]).
pair() {
	local name=$1 port=$2
	local common=(--hub "127.0.0.1:$hub_port" --bind 127.0.0.1:0 --turn "127.0.0.1:$port" --user alice --pass s3cret)
	nk_start "${name}_l" "$NK_TMP/${name}_l.log" bash -c 'exec "$@" </dev/null >"$0"' "$NK_TMP/${name}.out" \
		"$NATKIT" listen "${common[@]}" --key "$NK_TMP/a.key" --json
	nk_wait_for_log "$NK_TMP/${name}_l.log" '"event":"registered"' 10 || nk_fail "$name: listen did not register"
	nk_start "${name}_c" "$NK_TMP/${name}_c.log" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/up.bin" \
		"$NATKIT" connect "$ID_a" "${common[@]}" --key "$NK_TMP/b.key" --timeout 20
	nk_wait_for_log "$NK_TMP/${name}_c.log" "^\[nk\] ${name}_c exited with status" 30 || nk_fail "$name: connect did not finish"
	[[ $NK_MATCH == *"status 0" ]] || nk_fail "$name: connect $NK_MATCH"
	cmp "$NK_TMP/up.bin" "$NK_TMP/${name}.out" || nk_fail "$name: the file differs"
	local f
	for f in "$NK_TMP/${name}_l.log" "$NK_TMP/${name}_c.log"; do
		! grep -qi 'TURN server' "$f" || nk_fail "$name: $(grep -i 'TURN server' "$f")"
	done
}

# stop_listen NAME: SIGINT, exit 0 (after its release)
stop_listen() {
	kill -INT -- "-${NK_PROCS[${1}_l]}"
	nk_wait_for_log "$NK_TMP/${1}_l.log" "^\[nk\] ${1}_l exited with status" 10 || nk_fail "$1: listen did not exit"
	[[ $NK_MATCH == *"status 0" ]] || nk_fail "$1: listen at SIGINT: $NK_MATCH"
}

# ---- natkit's turn-server ----
printf 'realm=natkit.test\nuser=alice:s3cret\nmetrics=127.0.0.1:0\n' >"$NK_TMP/turn.conf"
nk_start turn "$NK_TMP/turn.log" "$NATKIT" turn-server --listen "127.0.0.1:$turn_port" --relay-ip 127.0.0.1 \
	--relay-ports "$relay_lo-$relay_hi" --allow-peer 127.0.0.1/32 --stale-nonce 1 --config "$NK_TMP/turn.conf"
nk_wait_for_log "$NK_TMP/turn.log" 'metrics on http://[^ ]*/metrics' 10 || nk_fail "no metrics line"
url=$(grep -o 'http://[^ ]*/metrics' <<<"$NK_MATCH")
nk_wait_for_log "$NK_TMP/turn.log" 'listening on' 10 || nk_fail "turn-server did not start"

pair n "$turn_port"
scrape "$url" "$NK_TMP/m1.txt"
[ "$(value "$NK_TMP/m1.txt" natkit_turn_allocations_created_total)" = 2 ] ||
	nk_fail "want 2 allocations created (listen, connect), got $(value "$NK_TMP/m1.txt" natkit_turn_allocations_created_total)"
[ "$(value "$NK_TMP/m1.txt" natkit_turn_allocations)" = 1 ] ||
	nk_fail "connect exited: want 1 live allocation (listen's), got $(value "$NK_TMP/m1.txt" natkit_turn_allocations)"
stale0=$(value "$NK_TMP/m1.txt" 'natkit_turn_auth_failures_total{reason="stale_nonce"}')
# listen's nonce must be older than the server's nonce lifetime (1 s) when it releases: this waits
# for time to pass, not for something to be ready
sleep 2
stop_listen n
scrape "$url" "$NK_TMP/m2.txt"
[ "$(value "$NK_TMP/m2.txt" natkit_turn_allocations)" = 0 ] ||
	nk_fail "listen exited: want no live allocation, got $(value "$NK_TMP/m2.txt" natkit_turn_allocations)"
stale1=$(value "$NK_TMP/m2.txt" 'natkit_turn_auth_failures_total{reason="stale_nonce"}')
[ "$stale1" -gt "$stale0" ] || nk_fail "listen's release was not answered 438 (stale nonce): $stale0 -> $stale1"
nk_stop turn
nk_log "natkit turn-server: 0 live allocations after connect and listen exited (listen's release renewed a stale nonce)"

# ---- coturn ----
if ! command -v turnserver >/dev/null; then
	nk_pass "connect and listen release their TURN allocations (coturn not installed: skipped it)"
fi
# -v: coturn logs each session's Refresh and its deletion (about 1 s after a Refresh with lifetime 0)
nk_start coturn "$NK_TMP/coturn.log" turnserver -n -v --log-file stdout --simple-log \
	-L 127.0.0.1 -p "$turn_port" --alt-listening-port $((turn_port + 1)) --no-tls --no-dtls --no-tcp --no-cli -m 1 \
	--pidfile "$NK_TMP/coturn.pid" --userdb "$NK_TMP/coturn.db" --realm natkit.test --lt-cred-mech \
	--user alice:s3cret --allow-loopback-peers --relay-ip 127.0.0.1 --min-port "$relay_lo" --max-port "$relay_hi" \
	--stale-nonce=1 --user-quota=2
nk_coturn_wait_ready coturn "$NK_TMP/coturn.log" "$turn_port" --no-tcp
pair c1 "$turn_port"
sleep 2 # as above: listen's nonce goes stale
stop_listen c1
nk_wait_for_log "$NK_TMP/coturn.log" 'refreshed, realm=<natkit.test>, username=<alice>, lifetime=0' 5 2 ||
	nk_fail "coturn: not both allocations were released (Refresh with lifetime 0)"
grep -q 'error 438' "$NK_TMP/coturn.log" || nk_fail "coturn: listen's release was not answered 438 (stale nonce)"
nk_wait_for_log "$NK_TMP/coturn.log" 'delete: realm=<natkit.test>, username=<alice>' 10 2 ||
	nk_fail "coturn: the released allocations were not deleted"
pair c2 "$turn_port" # coturn would answer 486 (user quota 2) if c1's allocations were still there
stop_listen c2
nk_pass "connect and listen release their TURN allocations: natkit turn-server (live allocations 0, a stale nonce renewed) and coturn (both released, one after a 438; a second pair within the user quota of 2)"
