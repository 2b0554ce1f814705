/*
 * natkit hub: the cluster driver. Several hubs share one Redis:
 *   natkit:hub:<id>            this hub's address, PX ttl, refreshed every ttl/3
 *   natkit:peer:<peer id>      the instance ID of the hub the peer is registered at, PX ttl
 *   natkit:hub:<id>:frames     the channel a hub subscribes to (nk_hub_cluster_msg)
 * Every directory change is one Lua script, so each is atomic. A frame for a
 * peer that is not here is routed by one script (look the peer up, publish to
 * its hub's channel): no cache to go stale, frames keep their order, and a
 * dead hub (no subscriber) reads as an unknown peer. Redis down: the hub serves
 * its own peers, frames for others are answered UNKNOWN_PEER, and the
 * connections are retried with backoff. docs/internals/hub.md, "Cluster".
 */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr_text.h"
#include "clock.h"
#include "errctx.h"
#include "hub_cluster.h"
#include "natkit/hub.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STOP_MS        1000 /* at shutdown, Redis gets this long to take the releases */
#define CONNECT_MS     3000 /* a connection (and SUBSCRIBE) not up by then is dropped and retried */
#define ANSWER_MS      15000 /* default answer_ms: requests outstanding, nothing heard this long: away */
#define INFLIGHT_MAX   (1 << 20) /* message bytes sent to Redis and not yet answered; beyond, frames wait
                                    in the core's forward queue (bounded there: RELAY dropped above half,
                                    the senders of other frames paused when it is full) */
#define KEY_MAX        (sizeof("natkit:peer:") + NK_PEER_ID_STRLEN)

/* Claims a peer for this hub; the hub it was registered at before hears MOVED. */
static const char CLAIM_LUA[] =
    "local old = redis.call('GET', KEYS[1]) "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "if old and old ~= ARGV[1] then redis.call('PUBLISH', 'natkit:hub:' .. old .. ':frames', ARGV[3]) end "
    "return 1";
/* Keeps a claim alive (or makes it again if it expired); 0 when another hub holds the peer. */
static const char REFRESH_LUA[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
    "return 0";
/* Deletes a claim only if it is still this hub's. */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";
/* Publishes a message to the hub holding the peer: subscribers reached (0: unknown or dead hub). */
static const char ROUTE_LUA[] =
    "local h = redis.call('GET', KEYS[1]) "
    "if not h then return 0 end "
    "return redis.call('PUBLISH', 'natkit:hub:' .. h .. ':frames', ARGV[1])";

struct nk__hub_cluster {
    uv_loop_t *loop;
    nk_hub_server *core;
    nk__hub_cluster_config cfg;
    char host[256], *password;
    int port;
    uint8_t idb[NK_HUB_CLUSTER_ID_SIZE];
    char id[2 * NK_HUB_CLUSTER_ID_SIZE + 1];
    char chan[64], hubkey[48], announce[NK_ADDR_STRLEN], ttl[24];
    redisAsyncContext *cmd, *sub;
    int cmd_up, sub_up;
    int state;      /* what was logged last: -1 nothing yet, 0 down, 1 up */
    int ever_up;
    char last_err[96]; /* the last Redis error logged: the same one is not logged again until up */
    int stopping;
    uv_timer_t refresh, retry, kill, watchdog, hung;
    int64_t cmd_heard_ms; /* the last byte from Redis on cmd, or when a request was sent with none owed */
    int kill_armed;
    int64_t backoff_ms;
    uint64_t bad_msgs;
    size_t inflight;  /* bytes of ROUTE messages not answered yet */
    uint8_t msg[NK_HUB_CLUSTER_MSG_MAX];
    uint8_t payload[NK_HUB_MAX_PAYLOAD];
};

/* What a routed frame needs when its script answers. */
typedef struct route_req {
    nk__hub_cluster *c;
    size_t size;
    uint8_t type;
    nk_peer_id src, dst;
} route_req;

typedef struct peer_req {
    nk__hub_cluster *c;
    nk_peer_id peer;
    nk_hub_conn_id conn; /* claims: the registration to confirm */
} peer_req;

static void clog_(nk__hub_cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void clog_(nk__hub_cluster *c, const char *fmt, ...)
{
    if (c->cfg.log == NULL)
        return;
    char line[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->cfg.log(c->cfg.log_ctx, line);
}

/* The channel the hub with instance ID id listens on (natkit:hub:<id>:frames). */
static void frames_chan(char chan[64], const uint8_t id[NK_HUB_CLUSTER_ID_SIZE])
{
    char hex[2 * NK_HUB_CLUSTER_ID_SIZE + 1];
    sodium_bin2hex(hex, sizeof(hex), id, NK_HUB_CLUSTER_ID_SIZE);
    snprintf(chan, 64, "natkit:hub:%s:frames", hex);
}

/* A message of kind from this hub; the caller fills in the rest. */
static void msg_init(const nk__hub_cluster *c, nk_hub_cluster_msg *m, nk_hub_cluster_kind kind)
{
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    memcpy(m->origin, c->idb, sizeof(m->origin));
}

static void peer_key(char *key, const nk_peer_id *peer)
{
    char idbuf[NK_PEER_ID_STRLEN];
    snprintf(key, KEY_MAX, "natkit:peer:%s", nk_peer_id_format(peer, idbuf, sizeof(idbuf)));
}

/* ---- hiredis on libuv ----
 * Our own glue rather than hiredis 0.14's adapters/libuv.h: that one ignores a
 * poll error, so a refused connection is never reported and never retried. */

typedef struct uv_glue {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    int events;
} uv_glue;

static void glue_poll(uv_poll_t *h, int status, int events)
{
    uv_glue *g = h->data;
    if (status != 0)
        events = g->events; /* an error on the socket: hiredis reads it and fails the context */
    nk__hub_cluster *c = g->ac != NULL ? g->ac->data : NULL;
    if (c != NULL && g->ac == c->cmd && (events & UV_READABLE))
        c->cmd_heard_ms = nk__now_ms(); /* Redis is answering (on_hung) */
    if (g->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(g->ac);
    if (g->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(g->ac);
}

static void glue_set(uv_glue *g, int add, int ev)
{
    g->events = add ? g->events | ev : g->events & ~ev;
    if (g->events != 0)
        uv_poll_start(&g->poll, g->events, glue_poll);
    else
        uv_poll_stop(&g->poll);
}

static void glue_add_read(void *p) { glue_set(p, 1, UV_READABLE); }
static void glue_del_read(void *p) { glue_set(p, 0, UV_READABLE); }
static void glue_add_write(void *p) { glue_set(p, 1, UV_WRITABLE); }
static void glue_del_write(void *p) { glue_set(p, 0, UV_WRITABLE); }

static void glue_closed(uv_handle_t *h)
{
    free(h->data);
}

static void glue_cleanup(void *p)
{
    uv_glue *g = p;
    g->ac = NULL;
    uv_close((uv_handle_t *)&g->poll, glue_closed);
}

static int glue_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    uv_glue *g = calloc(1, sizeof(*g));
    if (g == NULL || uv_poll_init(loop, &g->poll, ac->c.fd) != 0) {
        free(g);
        return -1;
    }
    g->ac = ac;
    g->poll.data = g;
    ac->ev.data = g;
    ac->ev.addRead = glue_add_read;
    ac->ev.delRead = glue_del_read;
    ac->ev.addWrite = glue_add_write;
    ac->ev.delWrite = glue_del_write;
    ac->ev.cleanup = glue_cleanup;
    return 0;
}

/* ---- connection state ---- */

static void connect_all(nk__hub_cluster *c);
static void refresh_all(nk__hub_cluster *c);

static void set_state(nk__hub_cluster *c, int up, const char *why)
{
    if (c->stopping || up == c->state)
        return;
    c->state = up;
    if (up)
        clog_(c, "cluster: redis %s:%d %s (hub id %s)", c->host, c->port, c->ever_up ? "reconnected" : "connected",
              c->id);
    else
        clog_(c, "cluster: redis %s:%d unreachable (%s); serving local peers only, retrying", c->host, c->port,
              why != NULL && why[0] ? why : "connection lost");
    c->ever_up |= up;
}

static void on_retry(uv_timer_t *t)
{
    connect_all(t->data);
}

static void schedule_retry(nk__hub_cluster *c)
{
    if (c->stopping || uv_is_active((uv_handle_t *)&c->retry))
        return;
    int64_t d = c->backoff_ms;
    d = d * 3 / 4 + (int64_t)randombytes_uniform((uint32_t)(d / 2 + 1)); /* ±25% jitter */
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    uv_timer_start(&c->retry, on_retry, (uint64_t)d, 0);
}

static void check_up(nk__hub_cluster *c)
{
    if (!c->cmd_up || !c->sub_up)
        return;
    c->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_stop(&c->watchdog);
    c->last_err[0] = '\0';
    set_state(c, 1, NULL);
    refresh_all(c); /* claims made while Redis was away, or lost with it */
}

/* An error reply, logged once until it changes or the connection is up again. */
static void log_error(nk__hub_cluster *c, const char *err)
{
    if (c->stopping || strncmp(c->last_err, err, sizeof(c->last_err) - 1) == 0)
        return;
    snprintf(c->last_err, sizeof(c->last_err), "%s", err);
    clog_(c, "cluster: redis error: %.200s", err);
}

static void on_reply_checked(redisAsyncContext *ac, void *r, void *priv)
{
    nk__hub_cluster *c = ac->data;
    redisReply *reply = r;
    (void)priv;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && c != NULL)
        log_error(c, reply->str);
}

/* AUTH and SELECT go first on a new connection (hiredis sends in order). */
static void hello(nk__hub_cluster *c, redisAsyncContext *ac, int select)
{
    char db[16];
    if (c->password != NULL) {
        const char *argv[] = {"AUTH", c->password};
        redisAsyncCommandArgv(ac, on_reply_checked, NULL, 2, argv, NULL);
    }
    if (select && c->cfg.db != 0) {
        snprintf(db, sizeof(db), "%d", c->cfg.db);
        const char *argv[] = {"SELECT", db};
        redisAsyncCommandArgv(ac, on_reply_checked, NULL, 2, argv, NULL);
    }
}

static void on_cmd_connect(const redisAsyncContext *ac, int status)
{
    nk__hub_cluster *c = ac->data;
    if (c->cmd != ac)
        return;
    if (status != REDIS_OK) {
        c->cmd = NULL; /* hiredis frees it */
        set_state(c, 0, ac->errstr);
        schedule_retry(c);
        return;
    }
    c->cmd_up = 1;
    c->cmd_heard_ms = nk__now_ms(); /* AUTH and SELECT wait from now, not from an older connection */
    check_up(c);
}

static void on_cmd_disconnect(const redisAsyncContext *ac, int status)
{
    nk__hub_cluster *c = ac->data;
    if (c->stopping && c->kill_armed) {
        uv_timer_stop(&c->kill);
        uv_close((uv_handle_t *)&c->kill, NULL);
        c->kill_armed = 0;
    }
    if (c->cmd != ac)
        return;
    c->cmd = NULL;
    c->cmd_up = 0;
    set_state(c, 0, status == REDIS_OK ? NULL : ac->errstr);
    schedule_retry(c);
}

static void on_sub_connect(const redisAsyncContext *ac, int status)
{
    nk__hub_cluster *c = ac->data;
    if (c->sub != ac)
        return;
    if (status != REDIS_OK) {
        c->sub = NULL;
        set_state(c, 0, ac->errstr);
        schedule_retry(c);
    }
    /* up once SUBSCRIBE is confirmed (on_message) */
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status)
{
    nk__hub_cluster *c = ac->data;
    if (c->sub != ac)
        return;
    c->sub = NULL;
    c->sub_up = 0;
    set_state(c, 0, status == REDIS_OK ? NULL : ac->errstr);
    schedule_retry(c);
}

static void on_message(redisAsyncContext *ac, void *r, void *priv);

static redisAsyncContext *open_ctx(nk__hub_cluster *c, redisConnectCallback *on_conn,
                                   redisDisconnectCallback *on_disc)
{
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
    if (ac == NULL) {
        set_state(c, 0, "out of memory");
        return NULL;
    }
    if (ac->err != 0) {
        set_state(c, 0, ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = c;
    if (glue_attach(ac, c->loop) != 0) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_conn);
    redisAsyncSetDisconnectCallback(ac, on_disc);
    return ac;
}

/* A connection that is not up in CONNECT_MS (a host that drops SYNs, a Redis that does not answer):
 * drop it and retry. */
static void on_watchdog(uv_timer_t *t)
{
    nk__hub_cluster *c = t->data;
    redisAsyncContext *cmd = c->cmd_up ? NULL : c->cmd, *sub = c->sub_up ? NULL : c->sub;
    if (cmd != NULL)
        c->cmd = NULL;
    if (sub != NULL)
        c->sub = NULL;
    if (cmd == NULL && sub == NULL)
        return;
    set_state(c, 0, "no answer in time");
    if (cmd != NULL)
        redisAsyncFree(cmd);
    if (sub != NULL)
        redisAsyncFree(sub);
    schedule_retry(c);
}

/*
 * Redis up but answering nothing for answer_ms while requests wait (a stuck Lua script, CLIENT PAUSE,
 * a path that drops silently): as good as gone. Both connections are dropped, which answers every
 * request still waiting (a routed frame's sender hears UNKNOWN_PEER, the forward queue is drained
 * the same way), and retried with backoff.
 */
static void on_hung(uv_timer_t *t)
{
    nk__hub_cluster *c = t->data;
    if (c->stopping || !c->cmd_up || c->cmd == NULL || c->cmd->replies.head == NULL ||
        nk__now_ms() - c->cmd_heard_ms < c->cfg.answer_ms)
        return;
    char why[64];
    snprintf(why, sizeof(why), "no answer in %lld ms", (long long)c->cfg.answer_ms);
    redisAsyncContext *cmd = c->cmd, *sub = c->sub;
    c->cmd = c->sub = NULL;
    c->cmd_up = c->sub_up = 0;
    set_state(c, 0, why);
    redisAsyncFree(cmd); /* its callbacks run with no reply (on_routed: UNKNOWN_PEER) */
    if (sub != NULL)
        redisAsyncFree(sub);
    schedule_retry(c);
}

static void connect_all(nk__hub_cluster *c)
{
    if (c->stopping)
        return;
    if (c->cmd == NULL && (c->cmd = open_ctx(c, on_cmd_connect, on_cmd_disconnect)) != NULL)
        hello(c, c->cmd, 1);
    if (c->sub == NULL && (c->sub = open_ctx(c, on_sub_connect, on_sub_disconnect)) != NULL) {
        hello(c, c->sub, 0);
        const char *argv[] = {"SUBSCRIBE", c->chan};
        redisAsyncCommandArgv(c->sub, on_message, NULL, 2, argv, NULL);
    }
    if (c->cmd == NULL || c->sub == NULL)
        schedule_retry(c);
    else if (!c->cmd_up || !c->sub_up)
        uv_timer_start(&c->watchdog, on_watchdog, CONNECT_MS, 0);
}

/* ---- the directory ---- */

/* A request goes out on cmd: if none was owed, the wait for an answer starts now (on_hung). */
static void owe(nk__hub_cluster *c)
{
    if (c->cmd != NULL && c->cmd->replies.head == NULL)
        c->cmd_heard_ms = nk__now_ms();
}

/* EVAL script 1 key a1 [a2 [a3]]; 0, or -1 when it was not queued (fn is not called). */
static int eval(nk__hub_cluster *c, redisCallbackFn *fn, void *priv, const char *script, const char *key,
                const char *a1, size_t a1len, const char *a2, const char *a3, size_t a3len)
{
    owe(c);
    const char *argv[7] = {"EVAL", script, "1", key, a1, a2, a3};
    size_t lens[7] = {4, strlen(script), 1, strlen(key), a1len, a2 != NULL ? strlen(a2) : 0, a3len};
    int argc = a3 != NULL ? 7 : a2 != NULL ? 6 : 5;
    return redisAsyncCommandArgv(c->cmd, fn, priv, argc, argv, lens) == REDIS_OK ? 0 : -1;
}

/* The claim is in (or Redis failed us): the peer hears REGISTERED now. */
static void on_claimed(redisAsyncContext *ac, void *r, void *priv)
{
    peer_req *q = priv;
    nk__hub_cluster *c = q->c;
    on_reply_checked(ac, r, NULL);
    if (!c->stopping && nk_hub_server_confirm(c->core, q->conn) == 0)
        c->cfg.process(c->cfg.process_ctx);
    free(q);
}

static void claim(nk__hub_cluster *c, const nk_peer_id *peer, nk_hub_conn_id conn)
{
    char key[KEY_MAX];
    nk_hub_cluster_msg m;
    msg_init(c, &m, NK_HUB_CM_MOVED);
    m.dst = *peer;
    int n = nk_hub_cluster_msg_encode(c->msg, sizeof(c->msg), &m);
    peer_req *q = n > 0 ? malloc(sizeof(*q)) : NULL;
    if (q == NULL) {
        (void)nk_hub_server_confirm(c->core, conn);
        return;
    }
    q->c = c;
    q->peer = *peer;
    q->conn = conn;
    peer_key(key, peer);
    if (eval(c, on_claimed, q, CLAIM_LUA, key, c->id, strlen(c->id), c->ttl, (const char *)c->msg, (size_t)n) != 0) {
        free(q);
        (void)nk_hub_server_confirm(c->core, conn);
    }
}

static void release(nk__hub_cluster *c, const nk_peer_id *peer)
{
    char key[KEY_MAX];
    peer_key(key, peer);
    (void)eval(c, on_reply_checked, NULL, RELEASE_LUA, key, c->id, strlen(c->id), NULL, NULL, 0);
}

/* 0 from the refresh script: the peer registered at another hub since; it goes from here. */
static void on_refreshed(redisAsyncContext *ac, void *r, void *priv)
{
    peer_req *q = priv;
    redisReply *reply = r;
    nk__hub_cluster *c = q->c;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0 && !c->stopping) {
        char idbuf[NK_PEER_ID_STRLEN];
        if (nk_hub_server_drop_peer(c->core, &q->peer, NK_HUB_CLOSE_REPLACED) == 0) {
            clog_(c, "cluster: %s registered at another hub; dropped here",
                  nk_peer_id_format(&q->peer, idbuf, sizeof(idbuf)));
            c->cfg.process(c->cfg.process_ctx);
        }
    } else if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        log_error(c, reply->str);
    }
    free(q);
}

static void refresh(nk__hub_cluster *c, const nk_peer_id *peer)
{
    char key[KEY_MAX];
    peer_req *q = malloc(sizeof(*q));
    if (q == NULL)
        return;
    q->c = c;
    q->peer = *peer;
    peer_key(key, peer);
    if (eval(c, on_refreshed, q, REFRESH_LUA, key, c->id, strlen(c->id), c->ttl, NULL, 0) != 0)
        free(q);
}

/* The peers registered here now (a walk over the core's slots; every ttl/3, not per frame). */
static nk_hub_peer_info *local_peers(nk__hub_cluster *c, size_t *n)
{
    size_t total = nk_hub_server_peers(c->core, 0, NULL, 0);
    nk_hub_peer_info *p = total > 0 ? malloc(total * sizeof(*p)) : NULL;
    *n = p != NULL ? nk_hub_server_peers(c->core, 0, p, total) : 0;
    if (*n > total)
        *n = total;
    return p;
}

static void refresh_all(nk__hub_cluster *c)
{
    if (!c->cmd_up || c->stopping)
        return;
    const char *argv[] = {"SET", c->hubkey, c->announce, "PX", c->ttl};
    owe(c);
    redisAsyncCommandArgv(c->cmd, on_reply_checked, NULL, 5, argv, NULL);
    size_t n;
    nk_hub_peer_info *p = local_peers(c, &n);
    for (size_t i = 0; i < n; i++)
        refresh(c, &p[i].peer);
    free(p);
}

static void on_refresh_timer(uv_timer_t *t)
{
    refresh_all(t->data);
}

/* ---- routing ---- */

static void drain_forward(nk__hub_cluster *c);

/* The ROUTE script's answer: 0 subscribers reached means no live hub holds dst. */
static void on_routed(redisAsyncContext *ac, void *r, void *priv)
{
    route_req *q = priv;
    redisReply *reply = r;
    nk__hub_cluster *c = q->c;
    c->inflight -= q->size;
    if (!c->stopping) {
        if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer == 0)
            (void)nk_hub_server_unknown_peer(c->core, q->type, &q->src, &q->dst);
        drain_forward(c); /* what waited for room */
        c->cfg.process(c->cfg.process_ctx);
    }
    free(q);
}

static void forward_one(nk__hub_cluster *c, const nk_hub_forward *fw)
{
    route_req *q = c->cmd_up && !c->stopping ? malloc(sizeof(*q)) : NULL;
    nk_hub_cluster_msg m;
    msg_init(c, &m, NK_HUB_CM_FRAME);
    m.type = fw->type;
    m.src = fw->src;
    m.dst = fw->dst;
    m.payload = fw->payload;
    m.len = fw->len;
    int n = q != NULL ? nk_hub_cluster_msg_encode(c->msg, sizeof(c->msg), &m) : -1;
    if (n >= 0) {
        q->c = c;
        q->size = (size_t)n;
        q->type = fw->type;
        q->src = fw->src;
        q->dst = fw->dst;
        char key[KEY_MAX];
        peer_key(key, &fw->dst);
        if (eval(c, on_routed, q, ROUTE_LUA, key, (const char *)c->msg, (size_t)n, NULL, NULL, 0) == 0) {
            c->inflight += (size_t)n;
            return;
        }
    }
    free(q); /* Redis away (or no memory): nobody else can be reached */
    (void)nk_hub_server_unknown_peer(c->core, fw->type, &fw->src, &fw->dst);
}

/* Frames leave the core's forward queue only while Redis keeps up (INFLIGHT_MAX). */
static void drain_forward(nk__hub_cluster *c)
{
    nk_hub_forward fw;
    int64_t now = nk__now_ms();
    while (c->inflight < INFLIGHT_MAX &&
           nk_hub_server_poll_forward(c->core, now, &fw, c->payload, sizeof(c->payload)) == 0)
        forward_one(c, &fw);
}

/* dst was not here after all: the hub that sent the frame tells its sender. */
static void answer_unknown(nk__hub_cluster *c, const nk_hub_cluster_msg *in)
{
    if (!c->cmd_up || c->stopping)
        return;
    nk_hub_cluster_msg m;
    msg_init(c, &m, NK_HUB_CM_UNKNOWN);
    m.type = in->type;
    m.src = in->src;
    m.dst = in->dst;
    int n = nk_hub_cluster_msg_encode(c->msg, sizeof(c->msg), &m);
    char chan[64];
    frames_chan(chan, in->origin);
    const char *argv[] = {"PUBLISH", chan, (const char *)c->msg};
    size_t lens[] = {7, strlen(chan), (size_t)n};
    if (n > 0) {
        owe(c);
        redisAsyncCommandArgv(c->cmd, on_reply_checked, NULL, 3, argv, lens);
    }
}

static void handle_msg(nk__hub_cluster *c, const uint8_t *p, size_t n)
{
    nk_hub_cluster_msg m;
    int rc;
    if (nk_hub_cluster_msg_decode(p, n, &m) != 0) {
        if (c->bad_msgs++ == 0)
            clog_(c, "cluster: ignoring a malformed message on %s (logged once)", c->chan);
        return;
    }
    switch (m.kind) {
    case NK_HUB_CM_FRAME:
        rc = nk_hub_server_deliver(c->core, nk__now_ms(), m.type, &m.src, &m.dst, m.payload, m.len);
        if (rc == NK_ERR_NOT_FOUND || (rc != 0 && m.type != NK_HUB_T_RELAY))
            answer_unknown(c, &m); /* the sender hears of it (a lost RELAY frame QUIC resends) */
        break;
    case NK_HUB_CM_UNKNOWN: (void)nk_hub_server_unknown_peer(c->core, m.type, &m.src, &m.dst); break;
    case NK_HUB_CM_MOVED:
        if (c->cmd_up && nk_hub_server_has_peer(c->core, &m.dst))
            refresh(c, &m.dst); /* drops it here if the directory says so */
        break;
    }
    c->cfg.process(c->cfg.process_ctx);
}

static void on_message(redisAsyncContext *ac, void *r, void *priv)
{
    nk__hub_cluster *c = ac->data;
    redisReply *reply = r;
    (void)priv;
    if (reply == NULL || c->stopping || c->sub != ac)
        return;
    if (reply->type == REDIS_REPLY_ERROR) { /* SUBSCRIBE refused (NOAUTH): retried with backoff */
        set_state(c, 0, reply->str);
        redisAsyncContext *sub = c->sub;
        c->sub = NULL;
        c->sub_up = 0;
        redisAsyncFree(sub);
        schedule_retry(c);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 || reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *what = reply->element[0]->str;
    if (strcmp(what, "subscribe") == 0) {
        c->sub_up = 1;
        check_up(c);
    } else if (strcmp(what, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        handle_msg(c, (const uint8_t *)reply->element[2]->str, reply->element[2]->len);
    }
}

/* ---- the service's side ---- */

void nk__hub_cluster_event(nk__hub_cluster *c, const nk_hub_server_event *ev)
{
    if (c == NULL || c->stopping)
        return;
    switch (ev->type) {
    case NK_HUB_SEV_REGISTERED:
        if (c->cmd_up)
            claim(c, &ev->peer, ev->conn);
        else /* Redis away: the peer is reachable here; refresh_all claims it on reconnection */
            (void)nk_hub_server_confirm(c->core, ev->conn);
        break;
    case NK_HUB_SEV_UNREGISTERED:
        if (c->cmd_up)
            release(c, &ev->peer);
        break;
    case NK_HUB_SEV_FORWARD: drain_forward(c); break;
    default: break;
    }
}

/* HOST:PORT or [v6]:PORT, the form every natkit address takes (base/addr.c); the port not 0. */
static int parse_hostport(nk__hub_cluster *c, const char *s)
{
    const char *port;
    uint16_t p;
    if (nk__addr_split_host_port(s, c->host, sizeof(c->host), &port) != 0 || nk__addr_parse_port(port, &p) != 0 ||
        p == 0)
        return NK_ERR_ADDRESS;
    c->port = p;
    return 0;
}

int nk__hub_cluster_new(nk__hub_cluster **out, uv_loop_t *loop, nk_hub_server *core,
                        const nk__hub_cluster_config *cfg)
{
    nk__hub_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NK_ERR_NOMEM;
    c->cfg = *cfg;
    c->loop = loop;
    c->core = core;
    if (cfg->redis == NULL || parse_hostport(c, cfg->redis) != 0) {
        nk__errctx_set(0, "use redis address '%s' (want HOST:PORT)", cfg->redis != NULL ? cfg->redis : "");
        free(c);
        return NK_ERR_ADDRESS;
    }
    if (cfg->password != NULL && (c->password = strdup(cfg->password)) == NULL) {
        free(c);
        return NK_ERR_NOMEM;
    }
    c->cfg.redis = c->cfg.password = NULL;
    if (c->cfg.ttl_ms < 300)
        c->cfg.ttl_ms = 15000;
    if (c->cfg.answer_ms <= 0)
        c->cfg.answer_ms = ANSWER_MS;
    else if (c->cfg.answer_ms < CONNECT_MS)
        c->cfg.answer_ms = CONNECT_MS; /* a short TTL does not make a busy second a reason to drop Redis */
    randombytes_buf(c->idb, sizeof(c->idb));
    sodium_bin2hex(c->id, sizeof(c->id), c->idb, sizeof(c->idb));
    frames_chan(c->chan, c->idb);
    snprintf(c->hubkey, sizeof(c->hubkey), "natkit:hub:%s", c->id);
    snprintf(c->ttl, sizeof(c->ttl), "%lld", (long long)c->cfg.ttl_ms);
    nk_addr_format(&cfg->announce, c->announce, sizeof(c->announce));
    c->state = -1;
    c->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &c->refresh);
    uv_timer_init(loop, &c->retry);
    uv_timer_init(loop, &c->watchdog);
    uv_timer_init(loop, &c->hung);
    c->refresh.data = c->retry.data = c->watchdog.data = c->hung.data = c;
    uint64_t every = (uint64_t)(c->cfg.ttl_ms / 3);
    uv_timer_start(&c->refresh, on_refresh_timer, every, every);
    uint64_t check = (uint64_t)(c->cfg.answer_ms / 10 > 1000 ? 1000 : c->cfg.answer_ms / 10 + 1);
    uv_timer_start(&c->hung, on_hung, check, check);
    connect_all(c);
    *out = c;
    return 0;
}

static void on_kill(uv_timer_t *t)
{
    nk__hub_cluster *c = t->data;
    uv_close((uv_handle_t *)&c->kill, NULL);
    c->kill_armed = 0;
    redisAsyncContext *ac = c->cmd;
    c->cmd = NULL;
    if (ac != NULL)
        redisAsyncFree(ac);
}

void nk__hub_cluster_stop(nk__hub_cluster *c)
{
    if (c == NULL || c->stopping)
        return;
    if (c->cmd_up) { /* give the IDs back now rather than at their TTL */
        size_t n;
        nk_hub_peer_info *p = local_peers(c, &n);
        for (size_t i = 0; i < n; i++)
            release(c, &p[i].peer);
        free(p);
        const char *argv[] = {"DEL", c->hubkey};
        redisAsyncCommandArgv(c->cmd, NULL, NULL, 2, argv, NULL);
    }
    c->stopping = 1;
    uv_close((uv_handle_t *)&c->refresh, NULL);
    uv_close((uv_handle_t *)&c->retry, NULL);
    uv_close((uv_handle_t *)&c->watchdog, NULL);
    uv_close((uv_handle_t *)&c->hung, NULL);
    redisAsyncContext *sub = c->sub, *cmd = c->cmd;
    c->sub = NULL;
    if (sub != NULL)
        redisAsyncFree(sub);
    if (cmd != NULL && c->cmd_up) {
        uv_timer_init(c->loop, &c->kill);
        c->kill.data = c;
        c->kill_armed = 1;
        uv_timer_start(&c->kill, on_kill, STOP_MS, 0);
        c->cmd_up = 0;
        redisAsyncDisconnect(cmd); /* after the replies to what is queued */
    } else if (cmd != NULL) {
        c->cmd = NULL;
        redisAsyncFree(cmd);
    }
}

int nk__hub_cluster_owns(const nk__hub_cluster *c, const uv_handle_t *h)
{
    return c != NULL && (h->type == UV_POLL || h == (const uv_handle_t *)&c->kill || h == (const uv_handle_t *)&c->refresh ||
                         h == (const uv_handle_t *)&c->retry || h == (const uv_handle_t *)&c->watchdog ||
                         h == (const uv_handle_t *)&c->hung);
}

void nk__hub_cluster_free(nk__hub_cluster *c)
{
    if (c == NULL)
        return;
    if (c->password != NULL) {
        sodium_memzero(c->password, strlen(c->password));
        free(c->password);
    }
    free(c);
}

const char *nk__hub_cluster_id(const nk__hub_cluster *c)
{
    return c->id;
}
