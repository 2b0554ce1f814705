/*
 * discover: your public address, as a STUN server sees it.
 *
 *   discover              starts a STUN server in this process on loopback and
 *                         asks it (the answer is 127.0.0.1:<our port>: on
 *                         loopback there is no NAT in between)
 *   discover HOST[:PORT]  asks that STUN server instead (default port 3478),
 *                         e.g. `discover stun.l.google.com:19302`
 *
 * Uses only the public API: nk_stun_service (the bundled STUN server driver,
 * natkit/stun_server.h) and nk_stun_discover (the bundled blocking driver of
 * the sans-I/O STUN client, natkit/stun_client.h). Exit status 0 when an
 * address was discovered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <natkit/natkit.h>

/*
 * Starts an nk_stun_service on 127.0.0.1. The service wants a real port (an
 * RFC 5780 server also serves port + 1), so try a few from a random start and
 * take the first that binds.
 */
static int start_local_server(nk_stun_service **svc, nk_addr *addr)
{
    nk_stun_service_options o;
    nk_stun_service_options_init(&o);
    o.tcp = 0; /* UDP is all this example needs */
    srand((unsigned)time(NULL) ^ (unsigned)clock());
    int rc = NK_ERR_ADDRESS;
    for (int i = 0; i < 50 && rc == NK_ERR_ADDRESS; i++) {
        nk_addr_parse(&o.listen, "127.0.0.1:0");
        o.listen.port = (uint16_t)(20000 + rand() % 40000);
        rc = nk_stun_service_start(svc, &o);
    }
    if (rc == 0)
        *addr = o.listen;
    return rc;
}

int main(int argc, char **argv)
{
    nk_stun_service *svc = NULL;
    nk_addr server;
    int rc;

    if (argc > 2) {
        fprintf(stderr, "usage: %s [STUN-SERVER[:PORT]]\n", argv[0]);
        return 2;
    }
    if (argc == 2) {
        /* A name is resolved here, in the caller: protocol cores never resolve. */
        if ((rc = nk_addr_resolve(&server, argv[1], 3478)) != 0) {
            fprintf(stderr, "discover: %s: %s\n", argv[1], nk_strerror(rc));
            return 1;
        }
    } else if ((rc = start_local_server(&svc, &server)) != 0) {
        fprintf(stderr, "discover: cannot start the local STUN server: %s\n", nk_strerror(rc));
        return 1;
    }

    /* One server, UDP, RFC retransmissions, but give up after 5 s in all. */
    nk_stun_client_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.servers = &server;
    cfg.nservers = 1;
    cfg.transport = NK_TRANSPORT_UDP;
    cfg.timeout_ms = 5000;
    cfg.software = "natkit example";

    nk_addr local;
    nk_stun_binding_result res;
    memset(&local, 0, sizeof(local));
    rc = nk_stun_discover(&cfg, NULL, &local, &res);

    char sbuf[NK_ADDR_STRLEN], mbuf[NK_ADDR_STRLEN], lbuf[NK_ADDR_STRLEN];
    if (rc == 0) {
        printf("server   %s\n", nk_addr_format(&res.server, sbuf, sizeof(sbuf)));
        printf("local    %s\n", nk_addr_format(&local, lbuf, sizeof(lbuf)));
        printf("mapped   %s  (your address as the server sees it)\n", nk_addr_format(&res.mapped, mbuf, sizeof(mbuf)));
        printf("rtt      %lld ms\n", (long long)res.rtt_ms);
    } else {
        fprintf(stderr, "discover: %s: %s\n", nk_addr_format(&server, sbuf, sizeof(sbuf)), nk_strerror(rc));
    }

    if (svc != NULL)
        nk_stun_service_free(svc); /* stops its threads, closes its sockets */
    return rc == 0 ? 0 : 1;
}
