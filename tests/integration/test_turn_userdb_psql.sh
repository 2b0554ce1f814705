#!/usr/bin/env bash
# natkit turn-server --psql-userdb: TURN users in coturn's PostgreSQL tables, with a PostgreSQL 15
# server this test makes (initdb in its folder, owned by the postgres user), starts on a free loopback
# port (its socket in that folder too) and stops at exit. coturn's own schema.sql is loaded; a role
# with a password (scram) connects over TCP. Users and a REST secret written by coturn's turnadmin -e
# authenticate (turn-check, turnutils_uclient); a wrong password is refused; a user added and then
# deleted by turnadmin while the server runs works / is refused within the documented bound (1 s);
# `natkit turn-user add/list/delete --psql-userdb` round-trip and interoperate with turnadmin -l.
# PostgreSQL stopped while the server runs: the last users keep working; started again, it is
# reconnected and a user added meanwhile works.
# Start errors: unreachable server, wrong password, missing tables (exit 1, the database named, never
# the password), bad connection string and two databases at once (exit 2).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init turn_userdb_psql
PGBIN=/usr/lib/postgresql/15/bin
nk_require turnadmin turnutils_peer turnutils_uclient runuser psql "$PGBIN/initdb" "$PGBIN/postgres" "$PGBIN/pg_isready" "$PGBIN/pg_ctl"
[ "$(id -u)" = 0 ] || nk_skip "needs root to run PostgreSQL as the postgres user"
. "$NK_SOURCE_DIR/tests/integration/turn_check_lib.sh"
. "$NK_SOURCE_DIR/tests/integration/turn_userdb_lib.sh"
NATKIT=${NATKIT:-${NK_BUILD_DIR:-build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found (NATKIT=$NATKIT)"

COUNT=20
BOUND_MS=1000 # docs/turn-server.md: changes are seen within 1 s
PGPASS=pg-s3cret-pw
port=$(nk_free_port 1)
peer_port=$(nk_free_port 1)
pg_port=$(nk_free_port 1)
relay_lo=$(nk_free_port 64)
relay_hi=$((relay_lo + 63))
PGDIR=$NK_TMP/pg
CONN="host=127.0.0.1 port=$pg_port dbname=coturn user=coturn password=$PGPASS connect_timeout=5"
ta() { turnadmin "$@" >>"$NK_TMP/turnadmin.log" 2>&1 || nk_fail "turnadmin $*: $(tail -n 3 "$NK_TMP/turnadmin.log")"; }
sql() { # sql DB USER ARGS...: psql over the server's unix socket (trust), stopping at the first error
	local db=$1 user=$2
	shift 2
	psql -X -q -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$pg_port" -U "$user" -d "$db" "$@" >>"$NK_TMP/psql.log" 2>&1 ||
		nk_fail "psql $*: $(tail -n 3 "$NK_TMP/psql.log")"
}

# ---- a PostgreSQL server of our own: local socket trust, TCP scram; stopped by nk_init's EXIT trap ----
chmod 711 "$NK_TMP" # the postgres user goes through to its folder
mkdir "$PGDIR" && chown postgres: "$PGDIR" && chmod 700 "$PGDIR" || nk_fail "cannot make $PGDIR for postgres"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
	--no-sync --no-instructions >"$NK_TMP/initdb.log" 2>&1 || nk_fail "initdb: $(tail -n 5 "$NK_TMP/initdb.log")"
# pg_start NAME: the server on its data folder, as process NAME, waited for
pg_start() {
	nk_start "$1" "$NK_TMP/$1.log" runuser -u postgres -- "$PGBIN/postgres" -D "$PGDIR/data" \
		-h 127.0.0.1 -p "$pg_port" -k "$PGDIR" -c fsync=off -c synchronous_commit=off -c full_page_writes=off
	nk_wait_for_log "$NK_TMP/$1.log" 'database system is ready to accept connections' 15 ||
		nk_fail "postgres ($1) did not start on 127.0.0.1:$pg_port"
}
pg_start postgres
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 5 || nk_fail "pg_isready: postgres does not answer on 127.0.0.1:$pg_port"
sql postgres postgres -c "CREATE ROLE coturn LOGIN PASSWORD '$PGPASS'" -c "CREATE DATABASE coturn OWNER coturn" \
	-c "CREATE DATABASE empty OWNER coturn"
sql coturn coturn -f /usr/share/coturn/schema.sql

# ---- users written by coturn's turnadmin ----
nk_turn_echo_peer "$peer_port"
ta -a -e "$CONN" -u bob -r natkit.test -p b0b
ta -a -e "$CONN" -u other -r other.realm -p x
ta -s northwind -e "$CONN" -r natkit.test
start_userdb_server natkit --psql-userdb "$CONN"
[[ $START_LINE =~ PostgreSQL\ userdb\ \(1\ users,\ 1\ REST\ secrets,\ read\ in\ [0-9]+\ ms\) ]] ||
	nk_fail "start line lacks the userdb counts: $START_LINE"
grep -q "$PGPASS" "$NK_TMP/natkit.log" && nk_fail "the PostgreSQL password is in the server's log"
tr '\0' ' ' <"/proc/$(pgrep -g "$NK_PID" -x natkit | head -n1)/cmdline" | grep -q "$PGPASS" &&
	nk_fail "the PostgreSQL password is still on the server's command line"

check_echo "turnadmin's user" --turn "127.0.0.1:$port" --user bob --pass b0b
check_refused "wrong password" '401' --turn "127.0.0.1:$port" --user bob --pass nope --peer "127.0.0.1:$peer_port"
check_refused "user of another realm" '401' --turn "127.0.0.1:$port" --user other --pass x --peer "127.0.0.1:$peer_port"
check_echo "REST name from turn_secret" --turn "127.0.0.1:$port" --auth-secret northwind
uclient_ok "uclient, turnadmin's user" -u bob -w b0b

# ---- changes while it runs ----
turn_refused --user carol --pass c4rol || nk_fail "carol works before she was added"
ta -a -e "$CONN" -u carol -r natkit.test -p c4rol
wait_until "user added by turnadmin -a works" "$BOUND_MS" turn_ok --user carol --pass c4rol
ta -d -e "$CONN" -u carol -r natkit.test
wait_until "user deleted by turnadmin -d is refused" "$BOUND_MS" turn_refused --user carol --pass c4rol

user_added --psql-userdb "$CONN" -e dave dave-pass
printf 'dave-new\n' | "$NATKIT" turn-user add --psql-userdb "$CONN" --realm natkit.test --user dave \
	2>>"$NK_TMP/turn-user.log" || nk_fail "turn-user add (change the password): $(cat "$NK_TMP/turn-user.log")"
wait_until "dave's new password works" "$BOUND_MS" turn_ok --user dave --pass dave-new
"$NATKIT" turn-user list --psql-userdb "$CONN" --realm natkit.test >"$NK_TMP/list.txt" || nk_fail "turn-user list failed"
[ "$(cat "$NK_TMP/list.txt")" = "$(printf 'bob\tnatkit.test\ndave\tnatkit.test')" ] || nk_fail "turn-user list: $(cat "$NK_TMP/list.txt")"
"$NATKIT" turn-user list --psql-userdb "$CONN" >"$NK_TMP/list.txt" || nk_fail "turn-user list (all realms) failed"
[ "$(cat "$NK_TMP/list.txt")" = "$(printf 'bob\tnatkit.test\ndave\tnatkit.test\nother\tother.realm')" ] ||
	nk_fail "turn-user list (all realms): $(cat "$NK_TMP/list.txt")"
"$NATKIT" turn-user delete --psql-userdb "$CONN" --realm natkit.test --user dave 2>>"$NK_TMP/turn-user.log" ||
	nk_fail "turn-user delete --psql-userdb: $(cat "$NK_TMP/turn-user.log")"
wait_until "user deleted by natkit turn-user is refused" "$BOUND_MS" turn_refused --user dave --pass dave-new
"$NATKIT" turn-user delete --psql-userdb "$CONN" --realm natkit.test --user dave 2>"$NK_TMP/err.txt"
rc=$?
[ $rc -eq 1 ] && grep -q "user 'dave' is not in realm natkit.test" "$NK_TMP/err.txt" ||
	nk_fail "delete of a missing user: exit $rc: $(cat "$NK_TMP/err.txt")"
turnadmin -l -e "$CONN" 2>/dev/null | grep -q dave && nk_fail "turnadmin -l -e still lists dave"

# ---- PostgreSQL lost while running: the last users stay, and it comes back ----
# a fast shutdown, waited for (a smart one waits for the turn-server's connection to go)
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w -t 20 stop >>"$NK_TMP/pg_ctl.log" 2>&1 ||
	nk_fail "pg_ctl stop: $(tail -n 3 "$NK_TMP/pg_ctl.log")"
nk_wait_for_log "$NK_TMP/postgres.log" '^\[nk\] postgres exited with status' 10 || nk_fail "postgres did not exit"
nk_stop postgres
nk_wait_for_log "$NK_TMP/natkit.log" 'serving the last 1 users and 1 secrets' 10 ||
	nk_fail "the server did not log losing PostgreSQL: $(tail -n 3 "$NK_TMP/natkit.log")"
turn_ok --user bob --pass b0b || nk_fail "bob refused while PostgreSQL is down: $(cat "$NK_TMP/poll_err.txt")"
pg_start postgres2
ta -a -e "$CONN" -u erin -r natkit.test -p 3rin
nk_wait_for_log "$NK_TMP/natkit.log" 'PostgreSQL .* is back' 10 || nk_fail "the server did not reconnect to PostgreSQL: $(tail -n 3 "$NK_TMP/natkit.log")"
wait_until "user added after PostgreSQL came back works" "$BOUND_MS" turn_ok --user erin --pass 3rin
turn_ok --user bob --pass b0b || nk_fail "bob refused after PostgreSQL came back: $(cat "$NK_TMP/poll_err.txt")"
nk_stop natkit || nk_fail "turn-server exited non-zero on SIGTERM"

# ---- start errors ----
# expect_err LABEL STATUS REGEX COMMAND...: natkit COMMAND exits STATUS, says REGEX, and not the password
expect_err() {
	local label=$1 want=$2 re=$3 rc
	shift 3
	"$NATKIT" "$@" >/dev/null 2>"$NK_TMP/err.txt"
	rc=$?
	[ "$rc" -eq "$want" ] && grep -qE "$re" "$NK_TMP/err.txt" || nk_fail "$label: exit $rc: $(cat "$NK_TMP/err.txt")"
	grep -q -e "$PGPASS" -e hunter2 "$NK_TMP/err.txt" && nk_fail "$label: the password was printed: $(cat "$NK_TMP/err.txt")"
	nk_log "$label: $(cat "$NK_TMP/err.txt")"
}
serve=(turn-server --listen "127.0.0.1:$port" --realm natkit.test --relay-ip 127.0.0.1)
dead=$(nk_free_port 1)
expect_err "unreachable PostgreSQL" 1 "host=127.0.0.1 port=$dead dbname=coturn.*refused" \
	"${serve[@]}" --psql-userdb "host=127.0.0.1 port=$dead dbname=coturn user=coturn password=$PGPASS connect_timeout=3"
expect_err "wrong database password" 1 "port=$pg_port dbname=coturn.*password authentication failed" \
	"${serve[@]}" --psql-userdb "host=127.0.0.1 port=$pg_port dbname=coturn user=coturn password=hunter2"
expect_err "database without coturn's tables" 1 "dbname=empty has no table turnusers_lt" \
	"${serve[@]}" --psql-userdb "host=127.0.0.1 port=$pg_port dbname=empty user=coturn password=$PGPASS"
expect_err "unknown connection option" 2 'bad PostgreSQL connection string: .*"prot"' \
	"${serve[@]}" --psql-userdb "host=127.0.0.1 prot=1 password=hunter2"
expect_err "connection string without =" 2 'bad PostgreSQL connection string' \
	"${serve[@]}" --psql-userdb "host=127.0.0.1 password hunter2"
expect_err "--userdb and --psql-userdb" 2 'give one of --userdb, --redis-userdb and --psql-userdb' \
	"${serve[@]}" --userdb "$NK_TMP/none.db" --psql-userdb "$CONN"
expect_err "turn-user with two databases" 2 'give exactly one of --userdb FILE, --redis-userdb CONNINFO and --psql-userdb' \
	turn-user list --userdb "$NK_TMP/none.db" --psql-userdb "$CONN"
expect_err "turn-user, unreachable PostgreSQL" 1 "port=$dead dbname=coturn.*refused" \
	turn-user list --psql-userdb "host=127.0.0.1 port=$dead dbname=coturn connect_timeout=3"

nk_pass "coturn PostgreSQL userdb: turnadmin's users and REST secret authenticate (turn-check, uclient), changes seen within $BOUND_MS ms, turn-user <-> turnadmin interop, PostgreSQL lost and back, start errors"
