#!/usr/bin/env bash
# natkit accept / natkit dial exit 0 only once the peer has written every byte to its stdout and
# said so ("natkit-delivered:", as connect/listen), both ways, over the sealed TCP stream and over
# the UDP session (--udp-only); loopback, no hub:
# - the receiver's stdin is /dev/null (its end goes first) and its stdout a FIFO whose reader
#   takes all but the last $TAIL bytes of $SIZE random bytes and then waits: the sender says its
#   bytes all went out and waits for the confirmation, still running while the receiver's stdout
#   lacks the tail; once the reader takes the rest, both exit 0 and the bytes are identical;
# - the acceptor stopped (SIGTERM) with the tail not yet on its stdout: the dialer exits 1 and
#   says that the acceptor had not confirmed that its bytes reached its output.
# Before the "delivered" message the sender exited 0 as soon as its bytes were acknowledged
# (UDP) or handed to the kernel (TCP), with the tail still in the receiver's buffers.
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init direct_deliver
NATKIT=${NATKIT:?NATKIT must point at the natkit binary}
nk_require cmp head

nk_keygen acc dial
SIZE=$((4 * 1024 * 1024))
# The tail must not fit the FIFO (64 KiB; what is in it is on stdout) and must fit the receiver's
# buffers beyond it with room to spare (its pump's 64 KiB, and the QUIC stream window, at least
# 256 KiB of which up to half may not have been advertised yet), or the sender's bytes could not
# all go out: 64 + 64 + 32 KiB.
TAIL=$((160 * 1024))
head -c $SIZE /dev/urandom >"$NK_TMP/data.bin"

# start_pair TAG DIR [accept/dial args]: DIR up (the dialer sends $SIZE bytes, the acceptor's
# stdout is the FIFO) or down (the other way). Sets SENDER, RECEIVER (TAG.acc / TAG.dial).
start_pair()
{
	local tag=$1 dir=$2 fifo ain aout din dout addr
	shift 2
	fifo=$NK_TMP/$tag.fifo
	mkfifo "$fifo" "$NK_TMP/$tag.go"
	# the reader opens the FIFO first (the receiver's open for writing waits for it), takes all
	# but the tail, says so, and takes the rest only after a line on $tag.go
	nk_start "$tag.reader" "$NK_TMP/$tag.reader.log" bash -c 'exec 3<"$0"
		head -c "$2" <&3 >"$1"; echo "reader at tail"; read -r _ <"$3"; cat <&3 >>"$1"; echo "reader done"' \
		"$fifo" "$NK_TMP/$tag.got" $((SIZE - TAIL)) "$NK_TMP/$tag.go"
	if [ "$dir" = up ]; then
		ain=/dev/null aout=$fifo din=$NK_TMP/data.bin dout=/dev/null SENDER=$tag.dial RECEIVER=$tag.acc
	else
		ain=$NK_TMP/data.bin aout=/dev/null din=/dev/null dout=$fifo SENDER=$tag.acc RECEIVER=$tag.dial
	fi
	nk_start "$tag.acc" "$NK_TMP/$tag.acc.log" bash -c 'in=$0 out=$1; shift; exec "$@" <"$in" >"$out"' "$ain" "$aout" \
		"$NATKIT" accept --key "$NK_TMP/acc.key" --advertise-ip 127.0.0.1 "$@"
	nk_wait_for_log "$NK_TMP/$tag.acc.log" '^UDP listen addr to share: ' 10 || nk_fail "$tag.acc printed no address"
	addr=${NK_MATCH#UDP listen addr to share: }
	nk_start "$tag.dial" "$NK_TMP/$tag.dial.log" bash -c 'in=$0 out=$1; shift; exec "$@" <"$in" >"$out"' "$din" "$dout" \
		"$NATKIT" dial "$addr" --key "$NK_TMP/dial.key" --timeout 10 "$@"
}

# wait_at_tail TAG CARRIER-REGEX: the reader holds the tail back, the sender has sent everything
# and waits; it must not exit for 2 s (an event that must not come).
wait_at_tail()
{
	local tag=$1 carrier=$2
	nk_wait_for_log "$NK_TMP/$tag.reader.log" '^reader at tail' 30 || nk_fail "$tag: the reader never got $((SIZE - TAIL)) bytes"
	nk_wait_for_log "$NK_TMP/$SENDER.log" 'waiting for the peer to confirm that they reached its output' 30
	case $? in
	1) nk_fail "$tag: $SENDER never said that its bytes all went out" ;;
	2) nk_fail "$tag: $SENDER exited ($NK_MATCH) while the last $TAIL bytes were not on $RECEIVER's stdout" ;;
	esac
	grep -qE "$carrier" "$NK_TMP/$SENDER.log" || nk_fail "$tag: not carried as expected (no line matching '$carrier')"
	if nk_wait_for_log "$NK_TMP/$SENDER.log" '^\[nk\] .* exited with status' 2; then
		nk_fail "$tag: $SENDER exited ($NK_MATCH) while the last $TAIL bytes were not on $RECEIVER's stdout"
	fi
	! grep -q '^reader done' "$NK_TMP/$tag.reader.log" || nk_fail "$tag: the reader did not hold the tail back"
}

# deliver_case TAG DIR CARRIER-REGEX [args]: the sender waits for the tail, then both exit 0.
deliver_case()
{
	local tag=$1 dir=$2 carrier=$3
	shift 3
	start_pair "$tag" "$dir" "$@"
	wait_at_tail "$tag" "$carrier"
	echo go >"$NK_TMP/$tag.go"
	nk_expect_exit "$SENDER" 0 30
	nk_expect_exit "$RECEIVER" 0 10
	nk_wait_for_log "$NK_TMP/$tag.reader.log" '^reader done' 10 || nk_fail "$tag: the reader did not finish"
	cmp "$NK_TMP/data.bin" "$NK_TMP/$tag.got" || nk_fail "$tag: $RECEIVER's stdout differs from the file"
	grep -q 'the peer finished sending' "$NK_TMP/$SENDER.log" || nk_fail "$tag: $SENDER did not see the peer's end"
	nk_log "$tag: $SENDER waited until $RECEIVER's stdout had the tail, then exit 0; $SIZE bytes identical"
}

# kill_case TAG CARRIER-REGEX [args]: the acceptor is stopped before its stdout has the tail.
kill_case()
{
	local tag=$1 carrier=$2
	shift 2
	start_pair "$tag" up "$@"
	wait_at_tail "$tag" "$carrier"
	nk_stop "$RECEIVER"
	nk_expect_exit "$SENDER" 1 15
	grep -qE 'lost the peer before the transfer ended \(.*\): the peer had not confirmed that our [0-9]+ bytes and their end reached its output' \
		"$NK_TMP/$SENDER.log" || nk_fail "$tag: the dialer did not say what was not confirmed: $(grep 'natkit dial' "$NK_TMP/$SENDER.log" | tail -3)"
	nk_stop "$tag.reader"
	nk_log "$tag: acceptor stopped before its stdout had the tail: dialer exit 1, $(grep -o 'lost the peer.*' "$NK_TMP/$SENDER.log")"
}

TCP='TCP stream with .* is up'
UDP='the data goes over the UDP session'
deliver_case tcpup up "$TCP"
deliver_case tcpdown down "$TCP"
deliver_case udpup up "$UDP" --udp-only
deliver_case udpdown down "$UDP" --udp-only
kill_case tcpkill "$TCP"
kill_case udpkill "$UDP" --udp-only

nk_pass "accept/dial exit 0 only once the peer's stdout has every byte (TCP and UDP, both ways); 1 when the acceptor went first"
