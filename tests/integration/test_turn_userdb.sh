#!/usr/bin/env bash
# natkit turn-server --userdb: TURN users in coturn's own SQLite database, on loopback.
# A database made by coturn's turnadmin (-a user, -s REST secret) is read through a --config file
# (userdb=, coturn's name); natkit turn-check and coturn's turnutils_uclient authenticate with that
# user, a wrong password is refused (401), a REST name made with the turn_secret works. While the
# server runs: a user added with turnadmin works within the documented bound (1 s), a user deleted
# is refused within it, a secret deleted by `natkit turn-user` stops REST names. Interop both ways:
# `natkit turn-user add` is listed by `turnadmin -l -b` and the other way round. Start errors
# (missing file, not a database, no coturn tables) exit 1 naming the file and the cause.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
nk_init turn_userdb
nk_require turnadmin turnutils_peer turnutils_uclient sqlite3
. "$NK_SOURCE_DIR/tests/integration/turn_check_lib.sh"
. "$NK_SOURCE_DIR/tests/integration/turn_userdb_lib.sh"
NATKIT=${NATKIT:-${NK_BUILD_DIR:-build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found (NATKIT=$NATKIT)"

COUNT=20
BOUND_MS=1000 # docs/turn-server.md: changes are seen within 1 s
port=$(nk_free_port 1)
peer_port=$(nk_free_port 1)
relay_lo=$(nk_free_port 64)
relay_hi=$((relay_lo + 63))
DB=$NK_TMP/turndb
# turnadmin logs to /var/log; keep its chatter out of the test's output
ta() { turnadmin "$@" >>"$NK_TMP/turnadmin.log" 2>&1 || nk_fail "turnadmin $*: $(tail -n 3 "$NK_TMP/turnadmin.log")"; }

nk_turn_echo_peer "$peer_port"

# ---- a database made by coturn's turnadmin, read through the config file ----
ta -a -b "$DB" -u alice -r natkit.test -p s3cret
ta -s northwind -b "$DB" -r natkit.test
ta -a -b "$DB" -u mallory -r other.test -p s3cret # another realm: not served
printf '# coturn names\nuserdb=%s\nlt-cred-mech\n' "$DB" >"$NK_TMP/turn.conf"
start_userdb_server sqlite --config "$NK_TMP/turn.conf"
[[ $START_LINE =~ userdb\ .*\(1\ users,\ 1\ REST\ secrets,\ read\ in\ [0-9]+\ ms\) ]] || nk_fail "start line lacks the userdb counts: $START_LINE"

check_echo "turnadmin's user" --turn "127.0.0.1:$port" --user alice --pass s3cret
check_refused "wrong password" '401' --turn "127.0.0.1:$port" --user alice --pass nope --peer "127.0.0.1:$peer_port"
check_refused "user of another realm" '401' --turn "127.0.0.1:$port" --user mallory --pass s3cret \
	--peer "127.0.0.1:$peer_port"
check_echo "REST name from turn_secret" --turn "127.0.0.1:$port" --auth-secret northwind --user natkit-test
check_refused "REST with a wrong secret" '401' --turn "127.0.0.1:$port" --auth-secret southwind \
	--peer "127.0.0.1:$peer_port"
uclient_ok "uclient, turnadmin's user" -u alice -w s3cret

# ---- changes while it runs ----
turn_refused --user dave --pass d4ve || nk_fail "dave works before he was added"
ta -a -b "$DB" -u dave -r natkit.test -p d4ve
wait_until "user added by turnadmin works" "$BOUND_MS" turn_ok --user dave --pass d4ve
ta -d -b "$DB" -u dave -r natkit.test
wait_until "user deleted by turnadmin is refused" "$BOUND_MS" turn_refused --user dave --pass d4ve

# natkit turn-user writes what coturn reads, and the running server sees it
printf 'erin-pass\n' >"$NK_TMP/erin.pass"
"$NATKIT" turn-user add --userdb "$DB" --realm natkit.test --user erin --pass-file "$NK_TMP/erin.pass" \
	2>>"$NK_TMP/turn-user.log" || nk_fail "turn-user add: $(cat "$NK_TMP/turn-user.log")"
turnadmin -l -b "$DB" 2>/dev/null | grep -qx 'erin\[natkit.test\]' ||
	nk_fail "turnadmin -l does not list natkit's user: $(turnadmin -l -b "$DB" 2>/dev/null)"
[ "$(sqlite3 "$DB" "SELECT hmackey FROM turnusers_lt WHERE name='erin'")" = \
	"$(printf 'erin:natkit.test:erin-pass' | md5sum | cut -d' ' -f1)" ] || nk_fail "erin's hmackey is not MD5(user:realm:pass)"
wait_until "user added by natkit turn-user works" "$BOUND_MS" turn_ok --user erin --pass erin-pass
NATKIT_TURN_PASS=changed "$NATKIT" turn-user add --userdb "$DB" --realm natkit.test --user erin 2>>"$NK_TMP/turn-user.log" ||
	nk_fail "turn-user add (new password from the environment) failed"
wait_until "old password refused after a change" "$BOUND_MS" turn_refused --user erin --pass erin-pass
turn_ok --user erin --pass changed || nk_fail "erin's new password does not work"
"$NATKIT" turn-user list --userdb "$DB" --realm natkit.test >"$NK_TMP/list.txt" || nk_fail "turn-user list failed"
[ "$(cat "$NK_TMP/list.txt")" = "$(printf 'alice\tnatkit.test\nerin\tnatkit.test')" ] ||
	nk_fail "turn-user list: $(cat "$NK_TMP/list.txt")"
"$NATKIT" turn-user delete --userdb "$DB" --realm natkit.test --user nobody 2>"$NK_TMP/err.txt"
rc=$?
[ $rc -eq 1 ] && grep -q "nobody" "$NK_TMP/err.txt" || nk_fail "delete of an unknown user: exit $rc: $(cat "$NK_TMP/err.txt")"
printf 'northwind\n' | "$NATKIT" turn-user delete-secret --userdb "$DB" --realm natkit.test 2>>"$NK_TMP/turn-user.log" ||
	nk_fail "turn-user delete-secret failed"
[ "$(sqlite3 "$DB" 'SELECT count(*) FROM turn_secret')" = 0 ] || nk_fail "secret still in turn_secret"
wait_until "REST refused once its secret is deleted" "$BOUND_MS" turn_refused --auth-secret northwind --user natkit-test
printf 'southwind' >"$NK_TMP/secret"
"$NATKIT" turn-user add-secret --userdb "$DB" --realm natkit.test --secret-file "$NK_TMP/secret" \
	2>>"$NK_TMP/turn-user.log" || nk_fail "turn-user add-secret failed"
wait_until "REST secret added by natkit turn-user works" "$BOUND_MS" turn_ok --auth-secret southwind --user natkit-test
nk_stop sqlite || nk_fail "turn-server exited non-zero on SIGTERM"

# ---- start errors: exit 1, the file and the cause named ----
start_error() {
	local label=$1 file=$2 pattern=$3 rc
	"$NATKIT" turn-server --listen "127.0.0.1:$port" --realm natkit.test --relay-ip 127.0.0.1 --userdb "$file" \
		>/dev/null 2>"$NK_TMP/err.txt"
	rc=$?
	[ $rc -eq 1 ] || nk_fail "$label: exit $rc, want 1: $(cat "$NK_TMP/err.txt")"
	grep -qF "$file" "$NK_TMP/err.txt" && grep -qE "$pattern" "$NK_TMP/err.txt" ||
		nk_fail "$label: message lacks the file or /$pattern/: $(cat "$NK_TMP/err.txt")"
	nk_log "$label: $(cat "$NK_TMP/err.txt")"
}
start_error "missing file" "$NK_TMP/nonexistent.db" 'No such file'
head -c 4096 /dev/urandom >"$NK_TMP/junk.db"
start_error "not a database" "$NK_TMP/junk.db" 'not a database'
sqlite3 "$NK_TMP/other.db" 'CREATE TABLE t (a)'
start_error "no coturn tables" "$NK_TMP/other.db" 'no table turnusers_lt'
"$NATKIT" turn-user --help | grep -q 'visible' || nk_fail "turn-user --help does not warn that --pass is visible"

nk_pass "coturn SQLite userdb: turnadmin's users and REST secret authenticate (turn-check, uclient), changes seen within $BOUND_MS ms, turn-user <-> turnadmin interop, start errors"
