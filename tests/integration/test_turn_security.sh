#!/usr/bin/env bash
# Security of `natkit turn-server` on real sockets, judged by an independent encoder
# (tests/integration/turn_security.py): the unauthenticated answer is a bounded 401 with REALM
# and NONCE whatever the request's size; wrong password -> 401; forged and stale nonces -> 438;
# every denied range and IPv4-carrying IPv6 form -> 403, with the secure defaults;
# REQUESTED-ADDRESS-FAMILY IPv6 -> 440; DONT-FRAGMENT honoured; junk and oversized datagrams
# dropped unanswered; the counters agree.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init turn_security
nk_require python3
NATKIT=${NATKIT:-${NK_BUILD_DIR:-build}/natkit}
[ -x "$NATKIT" ] || nk_fail "natkit binary not found (NATKIT=$NATKIT)"
here=$(cd "$(dirname "$0")" && pwd)

port=$(nk_free_port 1)
nk_start srv "$NK_TMP/srv.log" "$NATKIT" turn-server --listen "127.0.0.1:$port" --realm natkit.test \
	--user alice:wonderland --relay-ip 127.0.0.1 --relay-ports 33000-33999 --stale-nonce 2
nk_wait_for_log "$NK_TMP/srv.log" 'natkit-turn-server: listening on' 10 || nk_fail "turn-server did not start"
timeout 60 python3 "$here/turn_security.py" "$port" alice wonderland natkit.test 2 >"$NK_TMP/checks.txt" 2>&1
rc=$?
cat "$NK_TMP/checks.txt" >&2
[ $rc -eq 0 ] || nk_fail "security checks failed"
nk_stop srv || nk_fail "turn-server did not exit 0 on SIGTERM"
stats=$(grep 'natkit-turn-server: stopped' "$NK_TMP/srv.log") || nk_fail "no stats line"
nk_log "$stats"
[[ $stats =~ 403\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 52 ] || nk_fail "403s not counted: $stats"
[[ $stats =~ 438\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 2 ] || nk_fail "438s not counted: $stats"
[[ $stats =~ malformed\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 2 ] || nk_fail "junk and oversized datagrams not counted: $stats"
nk_pass "bounded 401, 401 on bad integrity, 438 on forged/stale nonces, 403 on every denied range and mapped form"
