/*
 * Fuzz target: the TURN server core. The input is a script of records
 * [op][len][bytes]: raw packets from a client (UDP or TCP) or from a peer on
 * a relay, and requests that the harness signs with valid long-term
 * credentials (so that fuzzed attributes reach Allocate, Refresh,
 * CreatePermission and ChannelBind past authentication). Time moves forward
 * with the ops; timeouts run. Signed requests whose method byte has the high
 * bit set name a fuzzed username instead, which reaches the TURN REST
 * (--auth-secret) expiry parsing past the nonce check. Nothing may crash, leak
 * or answer an unauthenticated request with more than the 401 challenge.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/stun.h"
#include "natkit/turn_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int f_open(void *ctx, const nk_addr *relay)
{
    (void)ctx;
    return relay->port % 7 == 0 ? NK_ERR_ADDRESS : 0;
}

static void f_close(void *ctx, const nk_addr *relay)
{
    (void)ctx;
    (void)relay;
}

static void f_random(void *ctx, uint8_t *buf, size_t n)
{
    uint32_t *state = ctx;
    for (size_t i = 0; i < n; i++) {
        *state = *state * 1103515245u + 12345u;
        buf[i] = (uint8_t)(*state >> 16);
    }
}

static const uint16_t methods[] = {NK_STUN_ALLOCATE, NK_STUN_REFRESH, NK_STUN_CREATE_PERMISSION,
                                   NK_STUN_CHANNEL_BIND, NK_STUN_BINDING};

/* A request of a fuzzed method whose attributes are fuzzed TLVs, signed like a real client. */
static size_t signed_request(const uint8_t *p, size_t n, const char *nonce, const uint8_t key[16], uint8_t *out,
                             size_t cap)
{
    nk_stun_builder b;
    uint8_t tid[NK_STUN_TID_SIZE] = {0};
    if (n < 1)
        return 0;
    memcpy(tid, p, n < sizeof(tid) ? n : sizeof(tid));
    nk_stun_build_begin(&b, out, cap, nk_stun_type(methods[p[0] % 5], NK_STUN_REQUEST), tid);
    size_t off = 1;
    while (off + 3 <= n) { /* [type hi][type lo][len] value */
        uint16_t type = (uint16_t)(p[off] << 8 | p[off + 1]);
        size_t len = p[off + 2];
        off += 3;
        if (len > n - off)
            len = n - off;
        nk_stun_build_attr(&b, type, p + off, len);
        off += len;
    }
    char user[40] = "alice";
    if (p[0] & 0x80) { /* a TURN REST username: "expiry[:name]", fuzzed */
        size_t ul = n - 1 < sizeof(user) - 1 ? n - 1 : sizeof(user) - 1;
        memcpy(user, p + 1, ul);
        user[ul] = '\0';
        if (user[0] == '\0')
            strcpy(user, "0");
    }
    nk_stun_build_string(&b, NK_STUN_ATTR_USERNAME, user);
    nk_stun_build_string(&b, NK_STUN_ATTR_REALM, "fuzz.example");
    nk_stun_build_string(&b, NK_STUN_ATTR_NONCE, nonce);
    nk_stun_build_integrity(&b, key, 16);
    int len = nk_stun_build_end(&b);
    return len > 0 ? (size_t)len : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[70000], req[4096];
    uint32_t rnd = 1;
    nk_turn_server *s;
    nk_turn_server_config c;
    nk_turn_server_config_init(&c);
    c.realm = "fuzz.example";
    c.relay_port_min = 50000;
    c.relay_port_max = 50015;
    c.max_allocations = 8;
    c.max_allocations_per_user = 4;
    c.auth_secret = "fuzz-rest-secret";
    nk_addr_parse_ip(&c.relay_ip, "192.0.2.1");
    nk_turn_server_ops ops = {.relay_open = f_open, .relay_close = f_close, .random = f_random, .ctx = &rnd};
    if (nk_turn_server_new(&s, &c, &ops) != 0)
        return 0;
    nk_turn_server_add_user(s, "alice", "pw");
    nk_turn_server_allow_peer(s, "198.51.100.0/24");
    uint8_t key[32];
    size_t kl;
    nk_stun_long_term_key(NK_STUN_PWALG_MD5, "alice", "fuzz.example", "pw", key, &kl);
    nk_addr local, peer, relay;
    nk_addr_parse(&local, "203.0.113.1:3478");
    nk_addr_parse(&peer, "198.51.100.7:9000");
    nk_addr_parse(&relay, "192.0.2.1:50000");
    char nonce[64] = "";
    int64_t now = 0;
    size_t off = 0;
    while (off + 3 <= size) {
        uint8_t op = data[off];
        size_t len = (size_t)(data[off + 1] << 8 | data[off + 2]);
        off += 3;
        if (len > size - off)
            len = size - off;
        const uint8_t *p = data + off;
        off += len;
        nk_addr client;
        nk_addr_parse(&client, (op & 0x10) ? "203.0.113.9:4000" : "203.0.113.8:4000");
        uint8_t transport = (op & 0x20) ? NK_TRANSPORT_TCP : NK_TRANSPORT_UDP;
        nk_transmit tx;
        int rc = 0;
        now += (op >> 6) * 100000;
        switch (op & 0x0f) {
        case 0: case 1: case 2: /* a raw packet from a client */
            rc = nk_turn_server_handle_client(s, now, transport, &client, &local, p, len, &tx, out, sizeof(out));
            if (rc == 1 && tx.len > 200 && len < 20)
                abort(); /* a runt packet was answered with more than a challenge */
            break;
        case 3: case 4: case 5: { /* a signed request */
            size_t n = signed_request(p, len, nonce, key, req, sizeof(req));
            rc = nk_turn_server_handle_client(s, now, transport, &client, &local, req, n, &tx, out, sizeof(out));
            break;
        }
        case 6: case 7: /* a datagram from a peer on a relay */
            if (len > 0 && (p[0] & 1)) /* else the relay of the newest allocation */
                relay.port = (uint16_t)(50000 + p[0] % 16);
            peer.port = (uint16_t)(9000 + (op & 0x30));
            rc = nk_turn_server_handle_relay(s, now, &relay, &peer, p, len, &tx, out, sizeof(out));
            break;
        case 8:
            nk_turn_server_handle_timeout(s, now);
            break;
        default:
            nk_turn_server_client_closed(s, now, transport, &client, &local);
            break;
        }
        if (rc == 1 && nk_addr_equal(&tx.to, &client)) { /* keep the newest nonce and relay */
            nk_stun_msg m;
            if (nk_stun_decode(&m, out, tx.len, 0) == 0) {
                nk_stun_get_string(&m, NK_STUN_ATTR_NONCE, nonce, sizeof(nonce));
                nk_stun_get_addr(&m, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &relay);
            }
        }
    }
    nk_turn_server_free(s);
    return 0;
}
