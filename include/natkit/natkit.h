/*
 * natkit: everything public, in one include. Every header in include/natkit/
 * is listed here (tests/build/check_natkit_h.sh checks it, and
 * tests/build/public_api.c uses every object through this header alone).
 */
#ifndef NATKIT_H
#define NATKIT_H

/* base */
#include "natkit/common.h"
#include "natkit/addr.h"
/* STUN: codec, client, NAT behaviour probe, server and its driver */
#include "natkit/stun.h"
#include "natkit/stun_client.h"
#include "natkit/nat_probe.h"
#include "natkit/stun_server.h"
#include "natkit/stun_service.h"
/* TURN */
#include "natkit/turn.h"
#include "natkit/turn_client.h"
#include "natkit/turn_server.h"
/* peers: identity, connectivity agent */
#include "natkit/identity.h"
#include "natkit/agent.h"
/* the hub */
#include "natkit/hub.h"
#include "natkit/hub_frame.h"
#include "natkit/hub_server.h"
#include "natkit/hub_client.h"
#include "natkit/hub_service.h"
#include "natkit/hub_link.h"
/* peer-to-peer connections by peer ID */
#include "natkit/node.h"
#include "natkit/node_driver.h"
/* TCP upgrade */
#include "natkit/tcp.h"
#include "natkit/upgrade.h"
#include "natkit/tcpseal.h"
#include "natkit/tcp_stream.h"
#include "natkit/tcp_connect.h"
#include "natkit/tcp_simopen.h"
#include "natkit/conn_tcp.h"
/* the TURN server's driver; the clock and UDP helpers for callers who drive cores themselves */
#include "natkit/turn_service.h"
#include "natkit/turn_userdb.h"
#include "natkit/clock.h"
#include "natkit/udp.h"
/* QUIC: the data plane between two peers */
#include "natkit/quic.h"
/* Prometheus metrics: the text writer and the HTTP endpoint */
#include "natkit/metrics.h"
#include "natkit/metrics_server.h"

#endif
