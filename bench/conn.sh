#!/usr/bin/env bash
# bench/conn.sh: memory per idle connection, N concurrent connections in one process.
#
# build/conn_load runs a hub, one listening node and N connecting nodes in one process; every
# connection opens a stream and moves BENCH_CONN_BYTES each way (checked), then everything sits
# idle and the heap is measured against the same process before the connections (mallinfo2).
# Prints the figures and the ratio heap per idle endpoint / 64 KiB (the issue's goal: <= 1.00).
#
# Settings (environment): BENCH_CONNS=200 BENCH_CONN_BYTES=65536 BENCH_CONN_IDLE_MS=1500
#   NK_BUILD_DIR (default: build)
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
nk_init bench-conn
nk_bench_setup 1
CONN_LOAD=${CONN_LOAD:-$NK_BUILD_DIR/conn_load}
[ -x "$CONN_LOAD" ] || nk_fail "conn_load not found at $CONN_LOAD (make builds it)"

echo "== connections: memory per idle connection (goal <= 64 KiB) =="
timeout 90 "$CONN_LOAD" -n "${BENCH_CONNS:-200}" --bytes "${BENCH_CONN_BYTES:-65536}" \
	--idle-ms "${BENCH_CONN_IDLE_MS:-1500}" --timeout 60 || nk_fail "conn_load could not measure"
