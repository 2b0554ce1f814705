/* natkit: transport addresses, independent of the socket API. */
#ifndef NATKIT_ADDR_H
#define NATKIT_ADDR_H

#include "natkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_AF_NONE  0
#define NK_AF_INET  4
#define NK_AF_INET6 6

/* An IP address and port. IPv4 uses ip[0..3]; port is in host order. */
typedef struct nk_addr {
    uint8_t family;   /* NK_AF_INET or NK_AF_INET6 (NK_AF_NONE: unset) */
    uint16_t port;
    uint8_t ip[16];
} nk_addr;

/* "IP:PORT" or "[IPv6]:PORT" (numeric only). 0 or NK_ERR_ADDRESS. */
NK_API int nk_addr_parse(nk_addr *out, const char *text);
/* "IP" only (port set to 0). 0 or NK_ERR_ADDRESS. */
NK_API int nk_addr_parse_ip(nk_addr *out, const char *text);
/* "HOST:PORT" where HOST may be a name (getaddrinfo, blocking; drivers/CLI only). */
NK_API int nk_addr_resolve(nk_addr *out, const char *text, uint16_t default_port);
/* The same, and for a name with addresses of both families one of each: out[0] as
 * nk_addr_resolve gives it, out[1] the first of the other family. Returns 1 or 2, or
 * NK_ERR_ADDRESS. (A dual-stack node gathers a server-reflexive candidate per family.) */
NK_API int nk_addr_resolve_families(nk_addr out[2], const char *text, uint16_t default_port);

#define NK_ADDR_STRLEN 56 /* enough for "[ffff:...:ffff%scope]:65535" */
/* Writes "IP:PORT" (or "[IPv6]:PORT") into buf; returns buf. */
NK_API char *nk_addr_format(const nk_addr *a, char *buf, size_t cap);
/* Writes only the IP. */
NK_API char *nk_addr_format_ip(const nk_addr *a, char *buf, size_t cap);

NK_API int nk_addr_equal(const nk_addr *a, const nk_addr *b);    /* ip and port */
NK_API int nk_addr_equal_ip(const nk_addr *a, const nk_addr *b); /* ip only */
NK_API size_t nk_addr_ip_len(const nk_addr *a);                   /* 4, 16 or 0 */

/* Conversions to and from struct sockaddr (pass a struct sockaddr_storage). */
struct sockaddr;
NK_API int nk_addr_to_sockaddr(const nk_addr *a, struct sockaddr *sa, unsigned *salen);
NK_API int nk_addr_from_sockaddr(nk_addr *a, const struct sockaddr *sa);

/*
 * The one wire form natkit's own protocols (hub frames, agent probes, the TCP
 * upgrade, accept/dial's hello) give an address: NK_ADDR_WIRE_SIZE bytes,
 * family u8 (0, 4 or 6) | port u16 big-endian | ip[16] (IPv4 in the first 4
 * bytes, the rest zero). An unset address (family 0) keeps its port, the IP
 * bytes are zero (the TCP upgrade's "my UDP IP, this port"); put writes zeros
 * for NULL or an unknown family. get takes exactly NK_ADDR_WIRE_SIZE bytes: 0,
 * or NK_ERR_MALFORMED for an unknown family; an unset address (family 0) is
 * returned as such, for the caller to refuse where it needs one. IPv4 bytes
 * past the first 4 are ignored.
 */
#define NK_ADDR_WIRE_SIZE 19
NK_API void nk_addr_wire_put(uint8_t out[NK_ADDR_WIRE_SIZE], const nk_addr *a);
NK_API int nk_addr_wire_get(nk_addr *a, const uint8_t in[NK_ADDR_WIRE_SIZE]);

#define NK_TRANSPORT_UDP 0
#define NK_TRANSPORT_TCP 1
#define NK_TRANSPORT_TLS 2

/*
 * A datagram (or stream bytes, for TCP/TLS) a protocol core wants sent: the
 * bytes are in the caller's buffer given to the poll function, len long.
 * from is the local address to send from when the core cares (RFC 5780
 * servers answering from another address), else family NK_AF_NONE.
 */
typedef struct nk_transmit {
    nk_addr to;
    nk_addr from;
    uint8_t transport; /* NK_TRANSPORT_* */
    size_t len;
} nk_transmit;

#ifdef __cplusplus
}
#endif
#endif
