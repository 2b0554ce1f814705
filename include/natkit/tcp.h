/*
 * natkit: upgrading an established QUIC connection to a TCP stream. One header per
 * object, see docs/internals/tcp-upgrade.md:
 *
 *  - natkit/upgrade.h: nk_upgrade, sans-I/O, the control exchange carried as
 *    messages of the connection (ANNOUNCE / SIMOPEN, ACK, RESULT);
 *  - natkit/tcpseal.h: nk_tcpseal, sans-I/O, the sealed byte stream (keys from
 *    the connection's TLS exporter, the token in the first record);
 *  - natkit/tcp_stream.h: nk_tcp_stream, a thin driver: an nk_tcpseal on a
 *    non-blocking socket;
 *  - natkit/tcp_connect.h and natkit/tcp_simopen.h: the socket helpers and
 *    nk_tcp_simopen for TCP simultaneous open.
 *
 * To upgrade an established nk_conn (two peers behind NATs) in one piece, see
 * natkit/conn_tcp.h. This header includes the five above.
 */
#ifndef NATKIT_TCP_H
#define NATKIT_TCP_H

#include "natkit/tcp_connect.h"
#include "natkit/tcp_simopen.h"
#include "natkit/tcp_stream.h"
#include "natkit/tcpseal.h"
#include "natkit/upgrade.h"

#endif
