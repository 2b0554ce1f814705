/*
 * natkit: the hub. Peers keep one TCP (or TLS) connection to a hub, register
 * under their peer ID by signing a hub challenge, and then exchange signalling
 * (connection requests, candidates) and, as the last resort, sealed relay
 * packets with other registered peers by ID. The hub tags everything it
 * delivers with the sender's verified ID; it never reads the payloads.
 *
 * One header per object (docs/internals/hub.md has the wire protocol):
 *
 *  - natkit/hub_frame.h: the frame codec (nk_hub_frame_*), bounds-checked, used
 *    by both cores;
 *  - natkit/hub_server.h: nk_hub_server, the sans-I/O server core. The driver
 *    tells it about connections (accept, bytes, close) and the time; it hands
 *    back bytes per connection, events and its next deadline;
 *  - natkit/hub_client.h: nk_hub_client, the sans-I/O client core for one hub
 *    connection;
 *  - drivers: natkit/hub_service.h, nk_hub_service (libuv server, TCP and TLS),
 *    and natkit/hub_link.h, nk_hub_link (a non-blocking TCP/TLS connection
 *    feeding a client core from any poll loop).
 *
 * No core reads a clock, opens a socket or sleeps; challenges come from one
 * injected random source (libsodium by default).
 *
 * This header includes them all.
 */
#ifndef NATKIT_HUB_H
#define NATKIT_HUB_H

#include "natkit/hub_client.h"
#include "natkit/hub_frame.h"
#include "natkit/hub_link.h"
#include "natkit/hub_server.h"
#include "natkit/hub_service.h"

#endif
