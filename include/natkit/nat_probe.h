/*
 * natkit: NAT behaviour discovery (RFC 5780), sans-I/O.
 *
 * The probe asks the driver for nk_nat_probe_socket_count() local UDP
 * sockets and is told their bound addresses at start. It then runs, mostly
 * in parallel, one STUN transaction (nk_stun_txn, short schedule) per test:
 *
 *   phase 1  Binding (test I) from every socket to the primary address:
 *            the public address, OTHER-ADDRESS and one port sample each;
 *   phase 2  mapping tests II and III from socket 0 (alternate IP, then
 *            alternate IP and port), filtering tests from sockets 1 (CHANGE
 *            IP+PORT) and 2 (CHANGE PORT), hairpinning (socket 3 sends a
 *            Binding request to socket 0's public address and watches it
 *            arrive on socket 0) and, when asked, binding lifetime trials
 *            (socket L_i is left idle for wait_i, then the last socket sends
 *            a request with RESPONSE-PORT = L_i's public port; the answer
 *            arriving on L_i means the binding was still alive).
 *
 * Every transmit names the socket it must leave from in nk_transmit.from
 * (one of the addresses given to nk_nat_probe_start). The probe never reads
 * a clock, opens a socket or sleeps.
 */
#ifndef NATKIT_NAT_PROBE_H
#define NATKIT_NAT_PROBE_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/stun_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nk_nat_behaviour {
    NK_NAT_UNKNOWN = 0,                  /* could not be tested */
    NK_NAT_ENDPOINT_INDEPENDENT,
    NK_NAT_ADDRESS_DEPENDENT,
    NK_NAT_ADDRESS_AND_PORT_DEPENDENT,
} nk_nat_behaviour;

typedef enum nk_port_allocation {
    NK_PORTS_UNKNOWN = 0,
    NK_PORTS_PRESERVING,                 /* public port = local port */
    NK_PORTS_SEQUENTIAL,                 /* successive mappings differ by port_delta */
    NK_PORTS_RANDOM,
} nk_port_allocation;

/* The RFC 3489 label. */
typedef enum nk_nat_classic {
    NK_CLASSIC_UNKNOWN = 0,
    NK_CLASSIC_OPEN,                     /* no NAT: public address = local address */
    NK_CLASSIC_FULL_CONE,
    NK_CLASSIC_RESTRICTED_CONE,
    NK_CLASSIC_PORT_RESTRICTED_CONE,
    NK_CLASSIC_SYMMETRIC,
    NK_CLASSIC_UDP_BLOCKED,
} nk_nat_classic;

/* Bits of nk_nat_report.untested: tests that could not be run, see note. */
#define NK_NAT_TEST_MAPPING   0x01
#define NK_NAT_TEST_FILTERING 0x02
#define NK_NAT_TEST_HAIRPIN   0x04
#define NK_NAT_TEST_PORTS     0x08
#define NK_NAT_TEST_LIFETIME  0x10

#define NK_NAT_PROBE_MAX_TRIALS  12
#define NK_NAT_PROBE_MAX_SAMPLES 8

typedef struct nk_nat_probe_config {
    nk_addr server;          /* the STUN server's primary address */
    int64_t rto_ms;
    int rc, rm;              /* per test; 0: 250 ms, 4, 4 (a lost test costs 11 RTO = 2.75 s) */
    int port_samples;        /* sockets whose test I mappings give the port pattern (4..8; 0: 6) */
    int lifetime;            /* 1: estimate the binding lifetime */
    int64_t lifetime_max_ms; /* longest idle wait tried (0: 60000; at most 600000) */
    const char *software;    /* SOFTWARE attribute, or NULL */
    nk_random_fn random;     /* transaction IDs; NULL: libsodium */
    void *random_ctx;
} nk_nat_probe_config;

typedef struct nk_nat_report {
    int status;                      /* 0; NK_ERR_TIMEOUT: no answer at all (UDP blocked); NK_ERR_STUN(c) */
    nk_addr local;                   /* socket 0's local address */
    nk_addr public_addr;             /* socket 0's mapped address (test I) */
    nk_addr other_address;           /* the server's OTHER-ADDRESS; NK_AF_NONE when absent */
    int behind_nat;                  /* 0: public = local */
    nk_nat_behaviour mapping;
    nk_nat_behaviour filtering;
    int hairpinning;                 /* 1, 0, or -1: not tested / not applicable */
    nk_port_allocation port_allocation;
    int port_delta;                  /* for NK_PORTS_SEQUENTIAL */
    size_t nsamples;                 /* port samples: local port -> public port, in allocation order */
    uint16_t sample_local[NK_NAT_PROBE_MAX_SAMPLES];
    uint16_t sample_public[NK_NAT_PROBE_MAX_SAMPLES];
    nk_nat_classic classic;
    int lifetime_min_s;              /* longest wait a binding survived (-1: none tested/survived) */
    int lifetime_max_s;              /* shortest wait a binding did not survive (-1: all survived) */
    unsigned untested;               /* NK_NAT_TEST_* bits */
    char note[256];                  /* why tests could not be run ("" when all ran) */
} nk_nat_report;

typedef struct nk_nat_probe nk_nat_probe;

NK_API int nk_nat_probe_new(nk_nat_probe **out, const nk_nat_probe_config *cfg);
NK_API void nk_nat_probe_free(nk_nat_probe *p);
/* How many local UDP sockets the driver must open (same family as the server). */
NK_API size_t nk_nat_probe_socket_count(const nk_nat_probe *p);
/* locals[i] is socket i's bound address (a concrete IP, not the wildcard). */
NK_API int nk_nat_probe_start(nk_nat_probe *p, int64_t now_ms, const nk_addr *locals, size_t n);
/* A datagram that arrived on the socket bound to local. 0: consumed; NK_ERR_NOT_FOUND: not ours. */
NK_API int nk_nat_probe_handle_datagram(nk_nat_probe *p, int64_t now_ms, const nk_addr *local,
                                        const nk_addr *from, const uint8_t *d, size_t n);
NK_API void nk_nat_probe_handle_timeout(nk_nat_probe *p, int64_t now_ms);
/* 0 and a datagram in buf (out->from: the socket to send from), or NK_ERR_AGAIN. */
NK_API int nk_nat_probe_poll_transmit(nk_nat_probe *p, int64_t now_ms, nk_transmit *out, uint8_t *buf,
                                      size_t cap);
NK_API int64_t nk_nat_probe_next_deadline(const nk_nat_probe *p);
/* 1 and *r filled when every test has ended, else 0. */
NK_API int nk_nat_probe_result(const nk_nat_probe *p, nk_nat_report *r);

/* "endpoint-independent", ..., "preserving", ..., "port-restricted-cone", ...; NULL for UNKNOWN. */
NK_API const char *nk_nat_behaviour_name(nk_nat_behaviour b);
NK_API const char *nk_port_allocation_name(nk_port_allocation a);
NK_API const char *nk_nat_classic_name(nk_nat_classic c);

#ifdef __cplusplus
}
#endif
#endif
