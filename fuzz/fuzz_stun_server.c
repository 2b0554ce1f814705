/*
 * Fuzz target: the STUN server's request handler. The first input byte picks
 * the server (plain IPv4, RFC 5780 IPv4 or IPv6), the transport and the local
 * address; the rest is the received packet. Whatever comes in, the handler
 * must not crash, must answer with at most nk_stun_server_response_bound(n)
 * bytes of valid STUN, and only from one of its own addresses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/stun.h"
#include "natkit/stun_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static nk_stun_server *servers[3];

static void setup(void)
{
    nk_addr p4, a4, p6, a6;
    nk_addr_parse(&p4, "127.0.0.1:3478");
    nk_addr_parse_ip(&a4, "127.0.0.2");
    nk_addr_parse(&p6, "[2001:db8::1]:3478");
    nk_addr_parse_ip(&a6, "2001:db8::2");
    if (nk_stun_server_new(&servers[0], &p4, NULL, 0) != 0 ||
        nk_stun_server_new(&servers[1], &p4, &a4, 0) != 0 ||
        nk_stun_server_new(&servers[2], &p6, &a6, 0) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[65536 + 128];
    if (servers[0] == NULL)
        setup();
    if (size < 1)
        return 0;
    const nk_stun_server *srv = servers[(data[0] & 3) % 3];
    uint8_t transport = (data[0] >> 2) & 1 ? NK_TRANSPORT_TCP : NK_TRANSPORT_UDP;
    nk_addr addrs[4], from;
    size_t naddrs = nk_stun_server_addrs(srv, addrs);
    const nk_addr *local = &addrs[(data[0] >> 3) % naddrs];
    from = addrs[0];
    from.port = 40000;
    from.ip[nk_addr_ip_len(&from) - 1] ^= 0x55;
    data++;
    size--;

    nk_transmit tx;
    nk_stun_server_stats_t st = {0};
    int rc = nk_stun_server_handle(srv, &st, local, &from, transport, data, size, &tx, buf, sizeof(buf));
    if (rc != 0) {
        if (st.responses + st.errors != 0)
            abort();
        return 0;
    }
    if (tx.len > nk_stun_server_response_bound(size) || tx.len > sizeof(buf))
        abort();
    nk_stun_msg m;
    if (nk_stun_decode(&m, buf, tx.len, 1) != 0)
        abort();
    int own = 0;
    for (size_t i = 0; i < naddrs; i++)
        own |= nk_addr_equal(&tx.from, &addrs[i]);
    if (!own || st.responses + st.errors != 1)
        abort();
    return 0;
}
