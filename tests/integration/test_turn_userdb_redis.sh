#!/usr/bin/env bash
# natkit turn-server --redis-userdb: TURN users in coturn's Redis layout, with a redis-server this
# test starts on a free loopback port (no persistence, its files in the test's folder) and stops.
# Users and a REST secret written by coturn's turnadmin -N authenticate (turn-check, turnutils_uclient);
# a wrong password is refused; a user written with redis-cli (SET .../key hex) works within the
# documented bound (1 s) while the server runs, and one deleted by turnadmin is refused within it;
# `natkit turn-user add --redis-userdb` is listed by `turnadmin -l -N`. Redis lost while running:
# logged, the last users keep working, and after Redis is back new users are seen again.
# An unreachable Redis or a bad connection string at start: exit 1 / 2 with the address or word named.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init turn_userdb_redis
nk_require turnadmin turnutils_peer turnutils_uclient redis-server redis-cli
. "$NK_SOURCE_DIR/tests/integration/turn_check_lib.sh"
. "$NK_SOURCE_DIR/tests/integration/turn_userdb_lib.sh"
NATKIT=${NATKIT:-${NK_BUILD_DIR:-build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found (NATKIT=$NATKIT)"

COUNT=20
BOUND_MS=1000 # docs/turn-server.md: changes are seen within 1 s
port=$(nk_free_port 1)
peer_port=$(nk_free_port 1)
redis_port=$(nk_free_port 1)
relay_lo=$(nk_free_port 64)
relay_hi=$((relay_lo + 63))
CONN="ip=127.0.0.1 port=$redis_port dbname=3 connect_timeout=5"
ta() { turnadmin "$@" >>"$NK_TMP/turnadmin.log" 2>&1 || nk_fail "turnadmin $*: $(tail -n 3 "$NK_TMP/turnadmin.log")"; }
rc_() { redis-cli -h 127.0.0.1 -p "$redis_port" -n 3 "$@"; }

start_redis() { # each in a folder of its own: turnadmin asks Redis to SAVE, and the second must start empty
	mkdir -p "$NK_TMP/redis$1"
	nk_redis_start "redis$1" "$redis_port" "$NK_TMP/redis$1"
}

nk_turn_echo_peer "$peer_port"
start_redis 1

# ---- users written by coturn's turnadmin ----
ta -a -N "$CONN" -u bob -r natkit.test -p b0b
ta -s northwind -N "$CONN" -r natkit.test
[ "$(rc_ type turn/realm/natkit.test/secret)" = set ] || nk_fail "turnadmin did not write the secret as a set"
start_userdb_server natkit --redis-userdb "$CONN"
[[ $START_LINE =~ \(1\ users,\ 1\ REST\ secrets,\ read\ in\ [0-9]+\ ms\) ]] || nk_fail "start line lacks the userdb counts: $START_LINE"

check_echo "turnadmin's user" --turn "127.0.0.1:$port" --user bob --pass b0b
check_refused "wrong password" '401' --turn "127.0.0.1:$port" --user bob --pass nope --peer "127.0.0.1:$peer_port"
check_echo "REST name from turn/realm/R/secret" --turn "127.0.0.1:$port" --auth-secret northwind
uclient_ok "uclient, turnadmin's user" -u bob -w b0b

# ---- changes while it runs ----
turn_refused --user carol --pass c4rol || nk_fail "carol works before she was added"
rc_ set turn/realm/natkit.test/user/carol/key "$(printf 'carol:natkit.test:c4rol' | md5sum | cut -d' ' -f1)" >/dev/null
wait_until "user written with redis-cli works" "$BOUND_MS" turn_ok --user carol --pass c4rol
ta -d -N "$CONN" -u carol -r natkit.test
wait_until "user deleted by turnadmin is refused" "$BOUND_MS" turn_refused --user carol --pass c4rol
user_added --redis-userdb "$CONN" -N dave dave-pass
"$NATKIT" turn-user list --redis-userdb "$CONN" --realm natkit.test >"$NK_TMP/list.txt" || nk_fail "turn-user list failed"
[ "$(cat "$NK_TMP/list.txt")" = "$(printf 'bob\tnatkit.test\ndave\tnatkit.test')" ] || nk_fail "turn-user list: $(cat "$NK_TMP/list.txt")"

# ---- Redis lost while running: the last users stay, and it comes back ----
nk_stop redis1
nk_wait_for_log "$NK_TMP/natkit.log" 'serving the last 2 users and 1 secrets' 10 ||
	nk_fail "the server did not log losing Redis: $(tail -n 3 "$NK_TMP/natkit.log")"
turn_ok --user bob --pass b0b || nk_fail "bob refused while Redis is down: $(cat "$NK_TMP/poll_err.txt")"
start_redis 2 # empty: no persistence
ta -a -N "$CONN" -u erin -r natkit.test -p 3rin
nk_wait_for_log "$NK_TMP/natkit.log" 'Redis userdb is back' 10 || nk_fail "the server did not reconnect to Redis"
wait_until "user added after Redis came back works" "$BOUND_MS" turn_ok --user erin --pass 3rin
turn_refused --user bob --pass b0b || nk_fail "bob still works although the new Redis does not have him"
nk_stop natkit || nk_fail "turn-server exited non-zero on SIGTERM"

# ---- start errors ----
dead=$(nk_free_port 1)
"$NATKIT" turn-server --listen "127.0.0.1:$port" --realm natkit.test --relay-ip 127.0.0.1 \
	--redis-userdb "ip=127.0.0.1 port=$dead" >/dev/null 2>"$NK_TMP/err.txt"
rc=$?
[ $rc -eq 1 ] && grep -q "127.0.0.1:$dead" "$NK_TMP/err.txt" && grep -qi 'refused' "$NK_TMP/err.txt" ||
	nk_fail "unreachable Redis: exit $rc: $(cat "$NK_TMP/err.txt")"
nk_log "unreachable Redis: $(cat "$NK_TMP/err.txt")"
"$NATKIT" turn-server --listen "127.0.0.1:$port" --realm natkit.test --relay-ip 127.0.0.1 \
	--redis-userdb "ip=127.0.0.1 prot=1 password=hunter2" >/dev/null 2>"$NK_TMP/err.txt"
rc=$?
[ $rc -eq 2 ] && grep -q "prot=1" "$NK_TMP/err.txt" || nk_fail "bad connection string: exit $rc: $(cat "$NK_TMP/err.txt")"
grep -q hunter2 "$NK_TMP/err.txt" && nk_fail "the Redis password was printed: $(cat "$NK_TMP/err.txt")"

nk_pass "coturn Redis userdb: turnadmin's users and REST secret set authenticate (turn-check, uclient), changes seen within $BOUND_MS ms, turn-user <-> turnadmin interop, Redis lost and back, start errors"
