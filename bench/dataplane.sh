#!/usr/bin/env bash
# bench/dataplane.sh: the data plane (issue 12), natkit connect -> listen vs plain TCP between
# the same two NAT lab namespaces, in one lab and one run, release build.
#
# Per case the same random file (BENCH_DP_MB, default 100 MB) goes one way twice:
#   plain   bench/tcp_oneway.py: kernel TCP (defaults), the sender's file -> the receiver's
#           file, from the accepted connection to the last byte written (a TCP port is
#           DNATed to the receiving host on its router for this);
#   natkit  `natkit connect ID < file` -> `natkit listen > file`, from the stream's start to
#           the last acknowledgement (connect's "done" event), on the path the agent selected.
# Both outputs are compared with the file (cmp). Cases (goal from issue 12):
#   direct  port-restricted cone -> full cone                    natkit >= 0.7x plain TCP
#   turn    symmetric -> symmetric (natkit's TURN server)        natkit >= 0.5x natkit direct
#   hub     UDP blocked -> full cone (the hub's TCP relay)       natkit >= 0.3x plain TCP
#   loss5   port-restricted cone with loss=5 -> full cone        natkit >= 0.5x plain TCP at the
#           same loss (5 % of the UDP packets dropped each way on the NAT's outside link; for
#           plain TCP the same 5 % of the TCP packets through that router, each way)
#   loss5bbr the same with `--cc bbr` on both natkit sides (CUBIC, the default, backs off at
#           every random loss)
# Each case runs BENCH_DP_ROUNDS times (plain and natkit alternating: ABBA) and the medians are
# compared (plain TCP at 5 % loss moves by 5x between runs). Exits non-zero only when it could
# not measure (a transfer failed or differs); goals missed are reported, not failed. Without
# root / network namespaces it prints why and exits 0.
# Settings: BENCH_DP_MB=100 BENCH_DP_ROUNDS=3 BENCH_DP_TIMEOUT=60 (seconds per transfer)
#   BENCH_DP_CASES="direct turn hub loss5 loss5bbr" BENCH_DP_CC (--cc for every natkit case),
#   NK_BUILD_DIR (default: build)
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
. "$NK_SOURCE_DIR/tests/lab/natlab.sh"
export LC_ALL=C
nk_init bench-dataplane
nk_bench_setup 1
export NATKIT
[ -x "$NATKIT" ] || nk_fail "natkit not found at $NATKIT (make builds it)"
if ! why=$(lab_can_run); then
	echo "== data plane: skipped ($why) =="
	exit 0
fi
nk_require python3 cmp
MB=${BENCH_DP_MB:-100}
SIZE=$((MB * 1000000))
ROUNDS=${BENCH_DP_ROUNDS:-3}
TMO=${BENCH_DP_TIMEOUT:-60}
CASES=${BENCH_DP_CASES:-direct turn hub loss5 loss5bbr}
ONEWAY=$NK_SOURCE_DIR/bench/tcp_oneway.py
TCP_PORT=5201
NATLAB_NO_TRAP=1
trap 'lab_down; nk__cleanup' EXIT
T_START=$SECONDS

lab_up || nk_fail "lab_up failed"
lab_add_nat pr port-restricted-cone || nk_fail "lab_add_nat pr"
lab_add_nat prL port-restricted-cone loss=5 || nk_fail "lab_add_nat prL"
lab_add_nat fc full-cone || nk_fail "lab_add_nat fc"
lab_add_nat symA symmetric || nk_fail "lab_add_nat symA"
lab_add_nat symB symmetric || nk_fail "lab_add_nat symB"
lab_add_nat blk udp-blocked || nk_fail "lab_add_nat blk"
# plain TCP's receivers (fc, symB) get TCP_PORT DNATed to their host
for n in fc symB; do
	lab_exec_router "$n" nft -f - <<EOF || nk_fail "TCP port forward on $n"
table ip benchtcp {
  chain pre { type nat hook prerouting priority -110;
    iifname "w0" tcp dport $TCP_PORT dnat to $(lab_host_ip "$n")
  }
}
EOF
	lab_exec_router "$n" nft insert rule ip filt ffwd iifname '"w0"' tcp dport $TCP_PORT accept ||
		nk_fail "TCP forward rule on $n"
done
# the lossy NAT drops 5 % of the TCP packets it forwards too, each way (its loss=5 is UDP only)
printf 'table ip tcploss {\n  chain f { type filter hook forward priority -10;\n    meta l4proto tcp numgen random mod 100 < 5 drop\n  }\n}\n' |
	lab_exec_router prL nft -f - || nk_fail "TCP loss rule on prL"
LAB_LOG_DIR=$NK_TMP
lab_start_servers stun turn hub || nk_fail "the lab's servers did not start"
COMMON=(--hub "$LAB_HUB" --stun "$LAB_STUN" --stun "$LAB_STUN_ALT"
	--turn "$LAB_TURN" --user "$LAB_TURN_USER" --pass "$LAB_TURN_PASS" --json ${BENCH_DP_CC:+--cc "$BENCH_DP_CC"})
head -c "$SIZE" /dev/urandom >"$NK_TMP/data.bin" || nk_fail "no room for the $MB MB file"
declare -A ID=()
keygen() { "$NATKIT" keygen --out "$NK_TMP/$1.key" 2>/dev/null | tail -1; }
mbs() { awk -v b="$SIZE" -v ms="$1" 'BEGIN { if (ms > 0) printf "%.1f", b / 1e6 / (ms / 1e3); else print "-" }'; }
paths_of() { grep -aE '"event":"(connected|path-changed)"' "$1" | sed -E 's/.*"path":"([a-z]+)".*/\1/' | paste -sd'>' -; }

# plain FROM TO: ms of one plain TCP transfer FROM's host -> TO's public address ("-" on failure)
plain() {
	local from=$1 to=$2 pid out ms
	rm -f "$NK_TMP/plain.out"
	pid=$(lab_bg "$(lab_ns "$to")" "$NK_TMP/plain.recv" timeout "$TMO" python3 "$ONEWAY" recv 0.0.0.0 $TCP_PORT "$NK_TMP/plain.out")
	lab__wait_for_log "$NK_TMP/plain.recv" '^listening' 10 "$pid" || { echo "-"; return; }
	out=$(lab_exec "$from" timeout "$TMO" python3 "$ONEWAY" send "$(lab_public_ip "$to")" $TCP_PORT "$NK_TMP/data.bin" 2>&1) ||
		nk_log "plain TCP $from -> $to failed: $out"
	wait "$pid" 2>/dev/null
	out=$(grep '^plain:' "$NK_TMP/plain.recv")
	if [ -z "$out" ] || ! cmp -s "$NK_TMP/data.bin" "$NK_TMP/plain.out"; then
		nk_log "plain TCP $from -> $to: nothing or not the file ($(cat "$NK_TMP/plain.recv"))"
		echo "-"
		return
	fi
	rm -f "$NK_TMP/plain.out"
	ms=$(awk '{ printf "%.0f", $5 * 1000 }' <<<"$out")
	echo "$ms"
}

# natkit FROM TO TAG [ARGS]: "MS PATHS" of one natkit connect (behind FROM) -> listen (behind TO),
# both with ARGS
natkit_run() {
	local from=$1 to=$2 tag=$3 fd ms done_ev paths
	shift 3
	ID[l-$tag]=$(keygen "l-$tag") || nk_fail "keygen"
	ID[c-$tag]=$(keygen "c-$tag") || nk_fail "keygen"
	rm -f "$NK_TMP/l-$tag.in"
	mkfifo "$NK_TMP/l-$tag.in"
	exec {fd}<>"$NK_TMP/l-$tag.in"
	nk_start "l-$tag" "$NK_TMP/l-$tag.err" bash -c 'in=$1 out=$2; shift 2; exec "$@" <"$in" >"$out"' _ \
		"$NK_TMP/l-$tag.in" "$NK_TMP/l-$tag.out" \
		ip netns exec "$(lab_ns "$to")" "$NATKIT" listen "${COMMON[@]}" --key "$NK_TMP/l-$tag.key" "$@"
	if ! nk_wait_for_log "$NK_TMP/l-$tag.err" '"event":"registered"' 20; then
		nk_log "listener behind $to did not register"
		exec {fd}>&-
		nk_stop "l-$tag" >/dev/null
		echo "- -"
		return
	fi
	nk_start "c-$tag" "$NK_TMP/c-$tag.err" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/data.bin" \
		ip netns exec "$(lab_ns "$from")" timeout "$TMO" "$NATKIT" connect "${ID[l-$tag]}" "${COMMON[@]}" \
		--key "$NK_TMP/c-$tag.key" --timeout 30 "$@"
	ms=-
	if nk_wait_for_log "$NK_TMP/c-$tag.err" '^\[nk\] .* exited with status' $((TMO + 10)) &&
		[[ $NK_MATCH == *"status 0" ]] && cmp -s "$NK_TMP/data.bin" "$NK_TMP/l-$tag.out"; then
		done_ev=$(grep -a '"event":"done"' "$NK_TMP/c-$tag.err" | tail -1)
		ms=$(nk_json_get "$done_ev" ms 2>/dev/null || echo -)
	else
		nk_log "natkit $from -> $to: failed or not the file (${NK_MATCH:-no exit}; logs $NK_TMP/c-$tag.err $NK_TMP/l-$tag.err)"
	fi
	paths=$(paths_of "$NK_TMP/c-$tag.err")
	nk_stop "c-$tag" >/dev/null
	exec {fd}>&-
	nk_stop "l-$tag" >/dev/null
	rm -f "$NK_TMP/l-$tag.out"
	echo "$ms ${paths:--}"
}

echo "== data plane: natkit connect -> listen vs plain TCP, $MB MB one way, same namespaces, same run =="
echo "   NAT lab (no added delay); natkit from $NATKIT; $ROUNDS round(s) per case"
declare -A P_MS=() N_MS=() PATHS=()
bad=0
for c in $CASES; do
	case $c in
	direct) from=pr to=fc want=direct ;;
	turn) from=symA to=symB want=turn ;;
	hub) from=blk to=fc want=hub ;;
	loss5) from=prL to=fc want=direct ;;
	loss5bbr) from=prL to=fc want=direct ;;
	*) nk_fail "unknown case $c" ;;
	esac
	args=()
	[ "$c" != loss5bbr ] || args=(--cc bbr)
	pv=() nv=() pth=""
	for ((r = 1; r <= ROUNDS; r++)); do
		if ((r % 2)); then
			p=$(plain "$from" "$to")
			read -r n pth < <(natkit_run "$from" "$to" "$c$r" "${args[@]}")
		else
			read -r n pth < <(natkit_run "$from" "$to" "$c$r" "${args[@]}")
			p=$(plain "$from" "$to")
		fi
		printf '   %-8s round %d: plain TCP %6s ms (%s MB/s)  natkit %6s ms (%s MB/s, path %s)\n' "$c" "$r" \
			"$p" "$(mbs "$p")" "$n" "$(mbs "$n")" "$pth"
		[ "$p" != - ] && pv+=("$p") || bad=1
		[ "$n" != - ] && nv+=("$n") || bad=1
		[ "$n" = - ] || [ "${pth##*>}" = "$want" ] || nk_log "$c: natkit ended on path ${pth##*>}, want $want"
	done
	P_MS[$c]=-
	N_MS[$c]=-
	[ ${#pv[@]} = 0 ] || P_MS[$c]=$(nk_bench_median "${pv[@]}")
	[ ${#nv[@]} = 0 ] || N_MS[$c]=$(nk_bench_median "${nv[@]}")
	PATHS[$c]=$pth
done

# ratio NUM_MS DEN_MS: throughput ratio (the inverse of the time ratio)
ratio() { [ "$1" = - ] || [ "$2" = - ] && echo n/a || nk_bench_ratio "$2" "$1"; }
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { if (r == "n/a") print "n/a"; else if (r + 0 >= g + 0) print "met"; else print "MISSED" }'; }
echo
printf '   %-8s %-36s %-9s %10s %10s  %-34s %s\n' case "sender -> receiver" path "plain MB/s" "natkit MB/s" "ratio (goal)" ""
json="{\"bench\":\"dataplane\",\"mb\":$MB,\"rounds\":$ROUNDS"
for c in $CASES; do
	case $c in
	direct) desc="port-restricted -> full cone" r=$(ratio "${N_MS[direct]}" "${P_MS[direct]}") g=0.7 of="plain TCP" ;;
	turn) desc="symmetric -> symmetric (TURN)" r=$(ratio "${N_MS[turn]}" "${N_MS[direct]:--}") g=0.5 of="natkit direct" ;;
	hub) desc="UDP blocked -> full cone (hub)" r=$(ratio "${N_MS[hub]}" "${P_MS[hub]}") g=0.3 of="plain TCP" ;;
	loss5) desc="port-restricted 5% loss -> full cone" r=$(ratio "${N_MS[loss5]}" "${P_MS[loss5]}") g=0.5 of="plain TCP, 5% loss" ;;
	loss5bbr) desc="the same, natkit --cc bbr" r=$(ratio "${N_MS[loss5bbr]}" "${P_MS[loss5bbr]}") g=0.5 of="plain TCP, 5% loss" ;;
	esac
	printf '   %-8s %-36s %-9s %10s %10s  %-34s %s\n' "$c" "$desc" "${PATHS[$c]}" "$(mbs "${P_MS[$c]}")" \
		"$(mbs "${N_MS[$c]}")" "${r}x of $of (>= $g)" "$(verdict "$r" "$g")"
	json+=",\"${c}_plain_mbs\":\"$(mbs "${P_MS[$c]}")\",\"${c}_natkit_mbs\":\"$(mbs "${N_MS[$c]}")\",\"${c}_ratio\":\"$r\""
done
echo "   (MB = 10^6 bytes; $((SECONDS - T_START)) s for the section)"
echo "BENCH-JSON $json}"
[ $bad = 0 ] || nk_fail "some transfers failed (see above)"
exit 0
