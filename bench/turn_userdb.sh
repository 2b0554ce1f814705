#!/usr/bin/env bash
# bench/turn_userdb.sh: TURN Allocate rate with 100,000 users in coturn's SQLite schema
# (natkit turn-server --userdb) against the same server with a --user account, same run
# (issue 13: goal >= 0.9x).
#
# The database is coturn's schema (made by `natkit turn-user add`, which runs coturn's CREATE TABLE
# statements) with BENCH_USERS users inserted in one transaction by python3's sqlite3 (hmackey =
# hex MD5(user:realm:pass), as turnadmin writes it); the account turn_load uses is one of them, in
# the middle. Two natkit turn-servers run at once, pinned to the same CPU(s); turn_load --mode
# alloc (401 -> Allocate -> Refresh(0) on fresh sockets) drives one at a time in ABBA order.
# Prints allocations/s per round, the medians, the ratio userdb/--user, and the userdb server's RSS.
#
# Settings (environment): BENCH_USERS=100000 BENCH_ROUNDS=4 BENCH_DURATION=3 BENCH_WARMUP=1
#   BENCH_TURN_SESSIONS=16, BENCH_SERVER_CPUS / BENCH_LOAD_CPUS, NK_BUILD_DIR (default: build)
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
nk_init bench-turn-userdb

USERS=${BENCH_USERS:-100000}
ROUNDS=${BENCH_ROUNDS:-4}
DURATION=${BENCH_DURATION:-3}
WARMUP=${BENCH_WARMUP:-1}
nk_bench_setup 1
TURN_LOAD=${TURN_LOAD:-$NK_BUILD_DIR/turn_load}
[ -x "$NATKIT" ] || nk_fail "natkit not found at $NATKIT (make builds it)"
[ -x "$TURN_LOAD" ] || nk_fail "turn_load not found at $TURN_LOAD (make builds it)"
nk_require python3 taskset
REALM=natkit.bench
CRED=(--user bench --pass bench-pass)
ALLOC_ARGS=(--mode alloc --allocations "${BENCH_TURN_SESSIONS:-16}" --duration "$DURATION" --warmup "$WARMUP" --json)

# ---- the database: coturn's schema, BENCH_USERS users ----
DB=$NK_TMP/turndb
t0=${EPOCHREALTIME//[.,]/}
printf 'x\n' >"$NK_TMP/pass"
"$NATKIT" turn-user add --userdb "$DB" --realm "$REALM" --user seed --pass-file "$NK_TMP/pass" >/dev/null 2>&1 ||
	nk_fail "natkit turn-user could not make the database"
python3 - "$DB" "$REALM" "$USERS" <<'PY' || nk_fail "could not fill the database"
import hashlib, sqlite3, sys
db, realm, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def row(name, pw):
    return (realm, name, hashlib.md5(f"{name}:{realm}:{pw}".encode()).hexdigest())
rows = [row(f"user{i:06d}", f"pass{i}") for i in range(n - 1)]
rows.insert(len(rows) // 2, row("bench", "bench-pass"))
c = sqlite3.connect(db)
with c:
    c.execute("DELETE FROM turnusers_lt")
    c.executemany("INSERT INTO turnusers_lt (realm, name, hmackey) VALUES (?, ?, ?)", rows)
c.close()
PY
t1=${EPOCHREALTIME//[.,]/}
[ "$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from turnusers_lt').fetchone()[0])" "$DB")" = "$USERS" ] ||
	nk_fail "the database does not hold $USERS users"

# ---- the two servers ----
start_server() {
	local name=$1 port=$2 lo=$3
	shift 3
	nk_start "$name" "$NK_TMP/$name.log" "${BENCH_PIN_SERVER[@]}" "$NATKIT" turn-server \
		--listen 127.0.0.1:$port --realm "$REALM" --relay-ip 127.0.0.1 --relay-ports "$lo-$((lo + 4999))" \
		--allow-peer 127.0.0.0/8 --max-allocations 20000 --max-allocations-per-user 0 --udp-rate 0 "$@"
	nk_wait_for_log "$NK_TMP/$name.log" 'natkit-turn-server: listening on' 30 ||
		nk_fail "natkit turn-server ($name) did not start on 127.0.0.1:$port"
}
db_port=$(nk_free_port 1)
start_server userdb "$db_port" 50000 --userdb "$DB"
grep -q "($USERS users" "$NK_TMP/userdb.log" || nk_fail "the userdb server did not read $USERS users: $(cat "$NK_TMP/userdb.log")"
load_ms=$(sed -nE 's/.*read in ([0-9]+) ms.*/\1/p' "$NK_TMP/userdb.log" | head -n1)
user_port=$(nk_free_port 1)
start_server account "$user_port" 55000 --user bench:bench-pass

rss_kb() {
	local pid sum=0 v
	for pid in $(ps -o pid= --sid "${NK_PROCS[$1]}"); do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
		sum=$((sum + ${v:-0}))
	done
	echo $sum
}
echo "== TURN Allocate rate: $USERS users in SQLite (--userdb) vs a --user account =="
echo "   database filled in $(((t1 - t0) / 1000)) ms, read by the server in ${load_ms:-?} ms;" \
	"servers on CPU ${BENCH_SERVER_CPUS:-any}, turn_load on CPU ${BENCH_LOAD_CPUS:-any}; $ROUNDS rounds of ${DURATION} s"

measure() {
	local port=$1 json
	json=$("${BENCH_PIN_LOAD[@]}" "$TURN_LOAD" --server 127.0.0.1:$port "${CRED[@]}" "${ALLOC_ARGS[@]}") ||
		nk_fail "turn_load against 127.0.0.1:$port failed: $json"
	nk_json_get "$json" allocations_per_s
}
d_vals=() u_vals=()
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then
		dv=$(measure "$db_port")
		uv=$(measure "$user_port")
	else
		uv=$(measure "$user_port")
		dv=$(measure "$db_port")
	fi
	[ -n "$dv" ] && [ -n "$uv" ] || nk_fail "round $r failed"
	d_vals+=("$dv")
	u_vals+=("$uv")
	printf '   round %d: --userdb %7d/s, --user %7d/s\n' "$r" "$dv" "$uv"
done
d_med=$(nk_bench_median "${d_vals[@]}")
u_med=$(nk_bench_median "${u_vals[@]}")
ratio=$(nk_bench_ratio "$d_med" "$u_med")
rss=$(rss_kb userdb)
rss_acct=$(rss_kb account)
nk_stop userdb
nk_stop account
echo "   allocations/s:  --userdb ($USERS users) $d_med, --user $u_med (medians): ratio ${ratio}x (goal >= 0.9)"
echo "   RSS: --userdb server $((rss / 1024)) MB, --user server $((rss_acct / 1024)) MB"
echo "BENCH-JSON {\"bench\":\"turn_userdb\",\"users\":$USERS,\"alloc_userdb_per_s\":$d_med,\"alloc_user_per_s\":$u_med,\"ratio\":$ratio,\"userdb_load_ms\":${load_ms:-null},\"rss_userdb_kb\":$rss,\"rss_user_kb\":$rss_acct,\"rounds\":$ROUNDS,\"duration_s\":$DURATION}"
