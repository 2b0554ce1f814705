/*
 * natkit: Binding discovery over several STUN servers, sans-I/O.
 *
 * Servers are tried in order. Each gets its own transaction (full RFC 8489
 * retransmission schedule); when a server has not answered within
 * failover_ms, the next one is started while the earlier ones keep running,
 * so a late answer from any of them still wins. An error response from one
 * server moves on to the next one at once. The whole attempt ends at
 * timeout_ms.
 */
#include <stdlib.h>
#include <string.h>

#include "natkit/stun_client.h"
#include "random.h"

#define DEFAULT_FAILOVER_MS 1500
#define DEFAULT_TIMEOUT_MS  NK_STUN_TI_MS

struct nk_stun_client {
    nk_stun_client_config cfg;
    nk_addr *servers;
    nk_stun_txn *txns;
    size_t started;          /* servers[0..started) have a transaction */
    int64_t start_ms;
    int64_t next_failover_ms;
    int finished;
    int last_error;
    nk_stun_binding_result result;
};

int nk_stun_binding_request(uint8_t *buf, size_t cap, const uint8_t tid[NK_STUN_TID_SIZE], uint32_t change_flags,
                            const char *software)
{
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, cap, nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid);
    if (change_flags != 0)
        nk_stun_build_u32(&b, NK_STUN_ATTR_CHANGE_REQUEST, change_flags);
    if (software != NULL)
        nk_stun_build_string(&b, NK_STUN_ATTR_SOFTWARE, software);
    nk_stun_build_fingerprint(&b);
    return nk_stun_build_end(&b);
}

int nk_stun_binding_parse(const nk_stun_msg *m, nk_stun_binding_result *res)
{
    memset(&res->mapped, 0, sizeof(res->mapped));
    memset(&res->response_origin, 0, sizeof(res->response_origin));
    memset(&res->other_address, 0, sizeof(res->other_address));
    uint16_t unknown[1];
    if (nk_stun_unknown_required(m, unknown, 1) > 0)
        return NK_ERR_MALFORMED; /* RFC 8489 6.3.3/6.3.4: an answer we cannot fully understand fails */
    if (nk_stun_class(m->type) == NK_STUN_ERROR) {
        int code = 0;
        const char *reason;
        size_t reason_len;
        if (nk_stun_get_error(m, &code, &reason, &reason_len) != 0)
            return NK_ERR_MALFORMED;
        return NK_ERR_STUN(code);
    }
    if (nk_stun_get_addr(m, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &res->mapped) != 0 &&
        nk_stun_get_addr(m, NK_STUN_ATTR_MAPPED_ADDRESS, &res->mapped) != 0)
        return NK_ERR_MALFORMED;
    nk_stun_get_addr(m, NK_STUN_ATTR_RESPONSE_ORIGIN, &res->response_origin);
    nk_stun_get_addr(m, NK_STUN_ATTR_OTHER_ADDRESS, &res->other_address);
    return 0;
}

int nk_stun_client_new(nk_stun_client **out, const nk_stun_client_config *cfg)
{
    *out = NULL;
    if (cfg == NULL || cfg->servers == NULL || cfg->nservers == 0 || cfg->failover_ms < 0 || cfg->timeout_ms < 0)
        return NK_ERR_INVAL;
    nk_stun_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NK_ERR_NOMEM;
    c->servers = calloc(cfg->nservers, sizeof(*c->servers));
    c->txns = calloc(cfg->nservers, sizeof(*c->txns));
    if (c->servers == NULL || c->txns == NULL) {
        nk_stun_client_free(c);
        return NK_ERR_NOMEM;
    }
    memcpy(c->servers, cfg->servers, cfg->nservers * sizeof(*c->servers));
    c->cfg = *cfg;
    c->cfg.servers = c->servers;
    if (c->cfg.failover_ms == 0)
        c->cfg.failover_ms = DEFAULT_FAILOVER_MS;
    if (c->cfg.timeout_ms == 0)
        c->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
    c->last_error = NK_ERR_TIMEOUT;
    *out = c;
    return 0;
}

void nk_stun_client_free(nk_stun_client *c)
{
    if (c == NULL)
        return;
    free(c->servers);
    free(c->txns);
    free(c);
}

static int start_next_server(nk_stun_client *c, int64_t now_ms)
{
    uint8_t tid[NK_STUN_TID_SIZE], req[256];
    size_t i = c->started;

    nk__random(c->cfg.random, c->cfg.random_ctx, tid, sizeof(tid));
    int len = nk_stun_binding_request(req, sizeof(req), tid, 0, c->cfg.software);
    if (len < 0)
        return len;
    int rc = nk_stun_txn_start(&c->txns[i], now_ms, &c->servers[i], c->cfg.transport, req, (size_t)len,
                               c->cfg.rto_ms, c->cfg.rc, c->cfg.rm);
    if (rc != 0)
        return rc;
    c->txns[i].max_rto_ms = c->cfg.max_rto_ms;
    c->started++;
    c->next_failover_ms = now_ms + c->cfg.failover_ms;
    return 0;
}

int nk_stun_client_start(nk_stun_client *c, int64_t now_ms)
{
    if (c->started != 0)
        return NK_ERR_STATE;
    c->start_ms = now_ms;
    return start_next_server(c, now_ms);
}

static void finish(nk_stun_client *c, int status)
{
    c->finished = 1;
    c->result.status = status;
}

/* Every started transaction failed and no server is left to try. */
static int all_failed(const nk_stun_client *c)
{
    if (c->started < c->cfg.nservers)
        return 0;
    for (size_t i = 0; i < c->started; i++)
        if (c->txns[i].state == NK_STUN_TXN_RUNNING)
            return 0;
    return 1;
}

static void on_response(nk_stun_client *c, int64_t now_ms, nk_stun_txn *t)
{
    nk_stun_msg m;
    nk_stun_binding_result r;
    memset(&r, 0, sizeof(r));
    int rc = nk_stun_decode(&m, t->response, t->response_len, 0);
    if (rc == 0)
        rc = nk_stun_binding_parse(&m, &r);
    if (rc == 0) {
        r.server = t->server;
        r.rtt_ms = t->rtt_ms;
        c->result = r;
        finish(c, 0);
        return;
    }
    /* This server refused or answered nonsense: remember why, try the next one now. */
    c->last_error = rc;
    if (c->started < c->cfg.nservers)
        start_next_server(c, now_ms);
    else if (all_failed(c))
        finish(c, c->last_error);
}

int nk_stun_client_handle_datagram(nk_stun_client *c, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t n)
{
    if (c->finished)
        return NK_ERR_NOT_FOUND;
    for (size_t i = 0; i < c->started; i++) {
        nk_stun_txn *t = &c->txns[i];
        if (nk_stun_txn_handle_response(t, now_ms, from, p, n) == 0) {
            on_response(c, now_ms, t);
            return 0;
        }
    }
    return NK_ERR_NOT_FOUND;
}

void nk_stun_client_handle_timeout(nk_stun_client *c, int64_t now_ms)
{
    if (c->finished)
        return;
    for (size_t i = 0; i < c->started; i++)
        nk_stun_txn_handle_timeout(&c->txns[i], now_ms);
    if (now_ms - c->start_ms >= c->cfg.timeout_ms) {
        finish(c, c->last_error);
        return;
    }
    if (c->started < c->cfg.nservers && now_ms >= c->next_failover_ms)
        start_next_server(c, now_ms);
    /* A server whose transaction has run out is as good as silent: move on. */
    while (c->started < c->cfg.nservers && c->txns[c->started - 1].state == NK_STUN_TXN_TIMEOUT)
        if (start_next_server(c, now_ms) != 0)
            break;
    if (all_failed(c))
        finish(c, c->last_error);
}

int nk_stun_client_poll_transmit(nk_stun_client *c, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap)
{
    if (c->finished)
        return NK_ERR_AGAIN;
    for (size_t i = 0; i < c->started; i++) {
        int rc = nk_stun_txn_poll_transmit(&c->txns[i], now_ms, out, buf, cap);
        if (rc != NK_ERR_AGAIN)
            return rc;
    }
    return NK_ERR_AGAIN;
}

int64_t nk_stun_client_next_deadline(const nk_stun_client *c)
{
    if (c->finished || c->started == 0)
        return NK_DEADLINE_NONE;
    int64_t d = c->start_ms + c->cfg.timeout_ms;
    if (c->started < c->cfg.nservers && c->next_failover_ms < d)
        d = c->next_failover_ms;
    for (size_t i = 0; i < c->started; i++) {
        int64_t td = nk_stun_txn_next_deadline(&c->txns[i]);
        if (td < d)
            d = td;
    }
    return d;
}

int nk_stun_client_result(const nk_stun_client *c, nk_stun_binding_result *res)
{
    if (!c->finished)
        return 0;
    *res = c->result;
    return 1;
}
