# tests/integration/turn_check_lib.sh: helpers shared by the natkit turn-check tests
# (sourced after tests/lib.sh and nk_init; uses NATKIT, NK_TMP, COUNT, relay_lo, relay_hi).

# nk_turn_echo_peer PORT [IP [NAME]]: coturn's turnutils_peer echoing UDP on IP:PORT (default 127.0.0.1).
nk_turn_echo_peer() {
	local peer_port=$1 ip=${2:-127.0.0.1} name=${3:-peer}
	# -v: it logs the end of its socket setup, which is the readiness signal.
	nk_start "$name" "$NK_TMP/$name.log" turnutils_peer -v -L "$ip" -p "$peer_port"
	nk_wait_for_log "$NK_TMP/$name.log" 'udp_create_server_socket.*end' 10 || nk_fail "turnutils_peer did not start on $ip"
}

# nk_turn_make_cert: a self-signed certificate for 127.0.0.1 and localhost in $NK_TMP/{cert,key}.pem.
nk_turn_make_cert() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
		-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		-keyout "$NK_TMP/key.pem" -out "$NK_TMP/cert.pem" >/dev/null 2>&1 || nk_fail "openssl could not make a certificate"
}

# check_echo LABEL ARGS...: turn-check --json must succeed with every packet echoed (to $PEER,
# default 127.0.0.1:$peer_port; relayed address matching $RELAYED_RE, default 127.0.0.1).
check_echo() {
	local label=$1 out rc relayed sent received p50 p99
	shift
	out=$(timeout 60 "$NATKIT" turn-check --peer "${PEER:-127.0.0.1:$peer_port}" --count $COUNT --interval 5 --json "$@" \
		2>"$NK_TMP/err.txt")
	rc=$?
	[ $rc -eq 0 ] || nk_fail "$label: turn-check exit $rc: $(cat "$NK_TMP/err.txt") $out"
	[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || nk_fail "$label: want exactly one JSON line: $out"
	relayed=$(nk_json_get "$out" relayed) || nk_fail "$label: no relayed: $out"
	sent=$(nk_json_get "$out" sent)
	received=$(nk_json_get "$out" received)
	p50=$(nk_json_get "$out" rtt_p50_ms)
	p99=$(nk_json_get "$out" rtt_p99_ms)
	[[ $relayed =~ ^${RELAYED_RE:-127\.0\.0\.1}:[0-9]+$ ]] || nk_fail "$label: relayed address '$relayed' is not on the relay IP"
	local port_of_relay
	port_of_relay=${relayed##*:}
	((port_of_relay >= relay_lo && port_of_relay <= relay_hi)) || nk_fail "$label: relay port outside the server's relay range: $out"
	[ "$sent" = $COUNT ] && [ "$received" = $COUNT ] || nk_fail "$label: loss: $out"
	[[ $p50 =~ ^[0-9]+\.[0-9]+$ && $p99 =~ ^[0-9]+\.[0-9]+$ ]] || nk_fail "$label: bad RTT figures: $out"
	nk_log "$label: $out"
}

# check_refused LABEL PATTERN ARGS...: turn-check must exit 1 and say PATTERN on stderr.
check_refused() {
	local label=$1 pattern=$2 rc
	shift 2
	timeout 60 "$NATKIT" turn-check --count 3 --json "$@" >"$NK_TMP/out.txt" 2>"$NK_TMP/err.txt"
	rc=$?
	[ $rc -eq 1 ] || nk_fail "$label: want exit 1, got $rc: $(cat "$NK_TMP/err.txt")"
	grep -qE "$pattern" "$NK_TMP/err.txt" || nk_fail "$label: stderr lacks /$pattern/: $(cat "$NK_TMP/err.txt")"
	nk_log "$label: $(cat "$NK_TMP/err.txt")"
}

