/*
 * natkit hub: the libuv driver for the server core. One loop thread owns the
 * core; it accepts TCP (and TLS, OpenSSL over memory BIOs) connections, feeds
 * the core bytes and time, writes what the core queues (one write in flight
 * per connection, so a slow reader's backlog stays in the core, where relay
 * frames are dropped first) and arms one timer for the core's deadline.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim */
#endif

#include "clock.h"
#include "errctx.h"
#include "hub_cluster.h"
#include "natkit/hub.h"
#include "sockets.h"
#include "tls_files.h"

#define READ_CHUNK  65536
#define WRITE_CHUNK 65536
#define FINISH_MS   2000 /* a closing peer gets this long to take its last bytes */

typedef struct hconn hconn;

struct nk_hub_service {
    nk_hub_service_options opt;
    nk_hub_server *core;
    nk__hub_cluster *cluster; /* options.redis: NULL alone */
    uv_loop_t loop;
    uv_tcp_t tcp_listener, tls_listener;
    int have_tcp, have_tls;
    uv_timer_t timer;
    uv_async_t stop_async;
    hconn *finishing; /* connections flushing their last bytes before close */
    SSL_CTX *ssl_ctx;
    nk_addr tcp_addr, tls_addr;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t stats_lock;
    nk_hub_stats_t stats;
    /* nk_hub_service_peers: a caller's request, answered by the loop thread (under stats_lock) */
    uv_async_t peers_async;
    pthread_mutex_t peers_lock; /* one caller at a time */
    pthread_cond_t peers_cond;
    int peers_state;            /* 0 idle, 1 asked, 2 answered */
    nk_hub_peer_info *peers_out;
    size_t peers_cap, peers_total;
    uint64_t conns_peak;        /* open connections at most since the last malloc_trim */
    uint8_t rbuf[READ_CHUNK];
    uint8_t wbuf[WRITE_CHUNK];  /* bytes pulled for one write; the write request copies what it needs */
};

/*
 * One connection: the libuv handle (248 bytes of its 296) and a few flags. It holds no buffer
 * of its own while idle: reads land in the service's one read buffer, writes go out from its one
 * write buffer (uv_try_write) and only what the socket does not take at once is copied into a
 * write request sized to it.
 */
struct hconn {
    uv_tcp_t tcp; /* its loop is the service's: svc_of */
    nk_hub_conn_id id;
    SSL *ssl; /* TLS only (its memory BIOs: SSL_get_rbio, SSL_get_wbio) */
    uint8_t writing;    /* a uv_write is in flight */
    uint8_t closing;    /* uv_close called */
    uint8_t finishing;  /* the core closed it: flush, TLS close_notify, FIN, wait for EOF */
    uint8_t paused;     /* not read: the core holds a frame of it back (cluster forward queue full) */
    uint8_t tls_held;   /* TLS: tls_input stopped for a pause; OpenSSL may hold plaintext still */
    uint8_t tls_closed, shut;
    int64_t finish_deadline;
    hconn *fnext, *fprev;
};

typedef struct wreq {
    uv_write_t req;
    hconn *hc;
    size_t len;
    uint8_t data[];
} wreq;

static void svc_log(nk_hub_service *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void svc_log(nk_hub_service *s, const char *fmt, ...)
{
    if (s->opt.log == NULL)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    s->opt.log(s->opt.log_ctx, line);
}

void nk_hub_service_options_init(nk_hub_service_options *o)
{
    memset(o, 0, sizeof(*o));
    nk_hub_server_config_init(&o->server);
    o->server.max_per_ip = 64;
    o->raise_nofile = 1;
}

/* The service a connection belongs to: the one whose loop its handle is on (no pointer kept). */
static nk_hub_service *svc_of(const hconn *hc)
{
    return (nk_hub_service *)((char *)hc->tcp.loop - offsetof(nk_hub_service, loop));
}

/* ---- addresses ---- */

static int sock_addrs(uv_tcp_t *t, nk_addr *local, nk_addr *remote)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len) != 0 || nk_addr_from_sockaddr(local, (struct sockaddr *)&ss) != 0)
        return NK_ERR_SYSTEM;
    if (remote != NULL) {
        len = sizeof(ss);
        if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) != 0 ||
            nk_addr_from_sockaddr(remote, (struct sockaddr *)&ss) != 0)
            return NK_ERR_SYSTEM;
        nk__addr_unmap_v4(remote);
    }
    nk__addr_unmap_v4(local);
    return 0;
}

/* ---- writing ---- */

static void conn_flush(hconn *hc);
static void process(nk_hub_service *s);
static void set_reading(hconn *hc);

static void hconn_free(uv_handle_t *h)
{
    hconn *hc = (hconn *)h;
    if (hc->id != 0)
        nk_hub_server_conn_closed(svc_of(hc)->core, hc->id);
    if (hc->ssl != NULL)
        SSL_free(hc->ssl); /* frees both BIOs */
    free(hc);
}

static void finishing_unlink(hconn *hc)
{
    if (!hc->finishing)
        return;
    if (hc->fprev != NULL)
        hc->fprev->fnext = hc->fnext;
    else
        svc_of(hc)->finishing = hc->fnext;
    if (hc->fnext != NULL)
        hc->fnext->fprev = hc->fprev;
    hc->fnext = hc->fprev = NULL;
}

static void conn_close(hconn *hc)
{
    if (hc->closing)
        return;
    finishing_unlink(hc);
    hc->closing = 1;
    uv_close((uv_handle_t *)&hc->tcp, hconn_free);
}

static void on_written(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    hconn *hc = w->hc;
    free(w);
    if (hc->closing)
        return;
    hc->writing = 0;
    if (status != 0) {
        conn_close(hc);
        return;
    }
    conn_flush(hc);
    process(svc_of(hc));
}

/* Pulls plaintext from the core; for TLS, encrypts it and takes the records. */
static size_t pull_bytes(hconn *hc, uint8_t *buf, size_t cap)
{
    nk_hub_server *core = svc_of(hc)->core;
    if (hc->ssl == NULL) {
        int n = nk_hub_server_poll_transmit(core, hc->id, buf, cap);
        return n > 0 ? (size_t)n : 0;
    }
    if (SSL_is_init_finished(hc->ssl) && !hc->tls_closed) {
        uint8_t plain[16384];
        int n;
        /* Records add < 256 bytes to each 16 KiB: stay well under cap. */
        while (BIO_ctrl_pending(SSL_get_wbio(hc->ssl)) + sizeof(plain) + 1024 <= cap &&
               (n = nk_hub_server_poll_transmit(core, hc->id, plain, sizeof(plain))) > 0) {
            if (SSL_write(hc->ssl, plain, n) != n)
                return 0;
        }
    }
    int r = BIO_read(SSL_get_wbio(hc->ssl), buf, (int)cap);
    return r > 0 ? (size_t)r : 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    hconn *hc = req->data;
    free(req);
    if (status != 0)
        conn_close(hc); /* else: wait for the peer's EOF (or FINISH_MS) */
}

/* Everything is written: TLS close_notify, then FIN. */
static void conn_shutdown(hconn *hc)
{
    if (hc->ssl != NULL && !hc->tls_closed) {
        hc->tls_closed = 1;
        (void)SSL_shutdown(hc->ssl);
        ERR_clear_error();
        if (BIO_ctrl_pending(SSL_get_wbio(hc->ssl)) > 0) {
            conn_flush(hc);
            return;
        }
    }
    if (hc->shut)
        return;
    hc->shut = 1;
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req == NULL) {
        conn_close(hc);
        return;
    }
    req->data = hc;
    if (uv_shutdown(req, (uv_stream_t *)&hc->tcp, on_shutdown) != 0) {
        free(req);
        conn_close(hc);
    }
}

/*
 * Writes what the core queued: straight from the service's write buffer while the socket takes
 * it (uv_try_write: nearly always, for a challenge or a PONG), so a connection allocates nothing
 * to write. Only what the socket leaves goes into a write request holding exactly those bytes
 * (not a 64 KiB chunk: thousands of connections writing at once would otherwise leave the heap
 * fragmented and large after they are gone), one in flight per connection.
 */
static void conn_flush(hconn *hc)
{
    while (!hc->writing && !hc->closing) {
        uint8_t *wbuf = svc_of(hc)->wbuf;
        size_t n = pull_bytes(hc, wbuf, WRITE_CHUNK);
        if (n == 0) {
            if (hc->finishing)
                conn_shutdown(hc);
            return;
        }
        uv_buf_t b = uv_buf_init((char *)wbuf, (unsigned)n);
        int r = uv_try_write((uv_stream_t *)&hc->tcp, &b, 1);
        if (r < 0 && r != UV_EAGAIN) {
            conn_close(hc);
            return;
        }
        size_t done = r > 0 ? (size_t)r : 0;
        if (done == n)
            continue;
        wreq *w = malloc(sizeof(*w) + n - done);
        if (w == NULL) {
            conn_close(hc);
            return;
        }
        w->hc = hc;
        w->len = n - done;
        memcpy(w->data, wbuf + done, w->len);
        b = uv_buf_init((char *)w->data, (unsigned)w->len);
        if (uv_write(&w->req, (uv_stream_t *)&hc->tcp, &b, 1, on_written) != 0) {
            free(w);
            conn_close(hc);
            return;
        }
        hc->writing = 1;
    }
}

/* Shutdown of the whole hub: one best-effort write of what is left (the reason), then close. */
static void conn_finish_now(hconn *hc)
{
    if (hc->closing)
        return;
    if (!hc->writing) {
        uint8_t buf[4096];
        size_t n = pull_bytes(hc, buf, sizeof(buf));
        if (n > 0) {
            uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);
            (void)uv_try_write((uv_stream_t *)&hc->tcp, &b, 1);
        }
    }
    conn_close(hc);
}

/*
 * CLOSE from the core: the peer still gets what is queued (the CLOSE frame
 * with the reason), then FIN; the socket closes at the peer's EOF, or after
 * FINISH_MS. Reading continues (and is discarded) so the kernel never answers
 * unread bytes with a reset that would destroy the reason.
 */
static void conn_finish(hconn *hc, int64_t now_ms)
{
    if (hc->closing || hc->finishing)
        return;
    hc->finishing = 1;
    set_reading(hc); /* a paused connection is read (and dropped) again */
    hc->finish_deadline = now_ms + FINISH_MS;
    hc->fnext = svc_of(hc)->finishing;
    if (hc->fnext != NULL)
        hc->fnext->fprev = hc;
    svc_of(hc)->finishing = hc;
    conn_flush(hc);
}

static void expire_finishing(nk_hub_service *s, int64_t now_ms)
{
    hconn *hc = s->finishing, *next;
    for (; hc != NULL; hc = next) {
        next = hc->fnext;
        if (now_ms >= hc->finish_deadline)
            conn_close(hc);
    }
}

/* ---- the core's events and timer ---- */

static void on_timer(uv_timer_t *t);

static void arm_timer(nk_hub_service *s)
{
    int64_t d = nk_hub_server_next_deadline(s->core), now = nk__now_ms();
    uint64_t wait = d <= now ? 0 : (uint64_t)(d - now);
    if (s->finishing != NULL && wait > 250)
        wait = 250;
    uv_timer_start(&s->timer, on_timer, wait, 0);
}

static void snapshot_stats(nk_hub_service *s)
{
    pthread_mutex_lock(&s->stats_lock);
    nk_hub_server_stats(s->core, &s->stats);
    pthread_mutex_unlock(&s->stats_lock);
}

static void process(nk_hub_service *s)
{
    nk_hub_server_event ev;
    char idbuf[NK_PEER_ID_STRLEN];
    snapshot_stats(s); /* before any byte leaves: counters never lag what peers see */
    while (nk_hub_server_poll_event(s->core, &ev) == 0) {
        hconn *hc = ev.user;
        switch (ev.type) {
        case NK_HUB_SEV_SEND: conn_flush(hc); break;
        case NK_HUB_SEV_CLOSE:
            if (ev.code != NK_HUB_CLOSE_NORMAL)
                svc_log(s, "closing connection: %s", nk_hub_close_reason(ev.code));
            if (ev.code == NK_HUB_CLOSE_REGISTER_TIMEOUT)
                conn_finish_now(hc); /* never registered (or evicted): its place is wanted now */
            else
                conn_finish(hc, nk__now_ms());
            break;
        case NK_HUB_SEV_REGISTERED:
            svc_log(s, "registered %s", nk_peer_id_format(&ev.peer, idbuf, sizeof(idbuf)));
            nk__hub_cluster_event(s->cluster, &ev);
            break;
        case NK_HUB_SEV_UNREGISTERED:
        case NK_HUB_SEV_FORWARD: nk__hub_cluster_event(s->cluster, &ev); break;
        case NK_HUB_SEV_PAUSE:
        case NK_HUB_SEV_RESUME: set_reading(hc); break;
        }
    }
    snapshot_stats(s);
    arm_timer(s);
}

/*
 * After a wave of connections has gone (a flood closed at its deadline), give the
 * freed heap back to the system: glibc keeps it otherwise. Only the loop thread
 * writes s->stats, so it reads them here without the lock.
 */
static void trim_after_drop(nk_hub_service *s)
{
    uint64_t conns = s->stats.conns;
    if (conns > s->conns_peak) {
        s->conns_peak = conns;
    } else if (s->conns_peak - conns >= 1024) {
#ifdef __GLIBC__
        malloc_trim(0);
#endif
        s->conns_peak = conns;
    }
}

static void on_timer(uv_timer_t *t)
{
    nk_hub_service *s = t->data;
    int64_t now = nk__now_ms();
    nk_hub_server_handle_timeout(s->core, now);
    expire_finishing(s, now);
    process(s);
    trim_after_drop(s);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    hconn *hc = h->data;
    buf->base = (char *)svc_of(hc)->rbuf;
    buf->len = READ_CHUNK;
}

/* Ciphertext in (n 0: only what OpenSSL holds), plaintext to the core until it pauses the connection. */
static int tls_input(hconn *hc, const uint8_t *p, size_t n)
{
    nk_hub_service *s = svc_of(hc);
    if (n > 0 && BIO_write(SSL_get_rbio(hc->ssl), p, (int)n) != (int)n)
        return -1;
    uint8_t plain[16384];
    for (;;) {
        if (nk_hub_server_paused(s->core, hc->id)) {
            hc->tls_held = 1; /* the rest waits in OpenSSL until the core takes input again */
            break;
        }
        int r = SSL_read(hc->ssl, plain, sizeof(plain));
        if (r > 0) {
            if (nk_hub_server_handle_bytes(s->core, nk__now_ms(), hc->id, plain, (size_t)r) != 0)
                return 0;
            continue;
        }
        int e = SSL_get_error(hc->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        ERR_clear_error();
        return -1;
    }
    return 0;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/*
 * Backpressure across hubs: while the core holds a frame of this connection back (the
 * cluster's forward queue is full), its socket is not read, so the peer's TCP window
 * closes; reading starts again (TLS: first what OpenSSL already holds) when it goes on.
 * A finishing connection is always read (and its input dropped).
 */
static void set_reading(hconn *hc)
{
    int pause = !hc->finishing && nk_hub_server_paused(svc_of(hc)->core, hc->id);
    if (hc->closing)
        return;
    if (pause != hc->paused) {
        hc->paused = pause;
        if (pause)
            uv_read_stop((uv_stream_t *)&hc->tcp);
        else
            uv_read_start((uv_stream_t *)&hc->tcp, on_alloc, on_read);
    }
    /* also when the core went on before the driver saw the pause: no socket event would come for it */
    if (!pause && hc->tls_held && !hc->finishing) {
        hc->tls_held = 0;
        if (tls_input(hc, NULL, 0) != 0)
            conn_close(hc);
        else
            conn_flush(hc);
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    hconn *hc = st->data;
    nk_hub_service *s = svc_of(hc);
    if (nread < 0) {
        conn_close(hc);
        process(s);
        return;
    }
    if (nread == 0 || hc->finishing)
        return; /* a finishing connection's input is read and dropped */
    if (hc->ssl == NULL) {
        (void)nk_hub_server_handle_bytes(s->core, nk__now_ms(), hc->id, (const uint8_t *)buf->base, (size_t)nread);
    } else if (tls_input(hc, (const uint8_t *)buf->base, (size_t)nread) != 0) {
        conn_close(hc);
        process(s);
        return;
    }
    process(s);
    conn_flush(hc); /* TLS handshake output */
}

/* ---- accepting ---- */

static int tls_attach(nk_hub_service *s, hconn *hc)
{
    hc->ssl = SSL_new(s->ssl_ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    if (hc->ssl == NULL || rbio == NULL || wbio == NULL) {
        BIO_free(rbio);
        BIO_free(wbio);
        return -1;
    }
    SSL_set_bio(hc->ssl, rbio, wbio);
    SSL_set_accept_state(hc->ssl);
    return 0;
}

/* Over max_conns: the peer learns why in one CLOSE frame, the core's (best effort, plain TCP only). */
static void say_full(const nk_hub_service *s, hconn *hc)
{
    uint8_t frame[NK_HUB_HEADER_SIZE + 2 + NK_HUB_MAX_REASON];
    int n = nk_hub_server_full_close(s->core, frame, sizeof(frame));
    if (n > 0) {
        uv_buf_t b = uv_buf_init((char *)frame, (unsigned)n);
        (void)uv_try_write((uv_stream_t *)&hc->tcp, &b, 1);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    nk_hub_service *s = listener->data;
    if (status != 0)
        return;
    hconn *hc = calloc(1, sizeof(*hc));
    if (hc == NULL)
        return;
    uv_tcp_init(&s->loop, &hc->tcp);
    hc->tcp.data = hc;
    if (uv_accept(listener, (uv_stream_t *)&hc->tcp) != 0) {
        conn_close(hc);
        return;
    }
    uv_tcp_nodelay(&hc->tcp, 1); /* pings measure the RTT, not Nagle */
    nk_addr local, remote;
    int tls = listener == (uv_stream_t *)&s->tls_listener;
    int rc = sock_addrs(&hc->tcp, &local, &remote);
    if (rc == 0 && tls && tls_attach(s, hc) != 0)
        rc = NK_ERR_NOMEM;
    if (rc == 0)
        rc = nk_hub_server_accept(s->core, nk__now_ms(), &local, &remote, hc, &hc->id);
    if (rc != 0) {
        snapshot_stats(s); /* counted before the peer can see it */
        if (rc == NK_ERR_LIMIT && !tls)
            say_full(s, hc);
        hc->id = 0;
        conn_close(hc);
        process(s);
        return;
    }
    uv_read_start((uv_stream_t *)&hc->tcp, on_alloc, on_read);
    process(s);
}

/* ---- start and stop ---- */

static void close_any(uv_handle_t *h, void *arg)
{
    nk_hub_service *s = arg;
    if (uv_is_closing(h) || nk__hub_cluster_owns(s->cluster, h))
        return; /* the cluster closes its own (hiredis's poll handles among them) */
    if (h->type == UV_TCP && h->data != NULL && h->data != arg) {
        hconn *hc = h->data; /* a connection: tell the peer why, best effort */
        nk_hub_server_close(svc_of(hc)->core, hc->id, NK_HUB_CLOSE_SHUTDOWN);
        conn_finish_now(hc);
        return;
    }
    uv_close(h, NULL);
}

static void on_stop(uv_async_t *a)
{
    nk_hub_service *s = a->data;
    nk__hub_cluster_stop(s->cluster);
    uv_walk(&s->loop, close_any, s);
}

/* The loop thread answers nk_hub_service_peers: only it touches the core. */
static void on_peers(uv_async_t *a)
{
    nk_hub_service *s = a->data;
    pthread_mutex_lock(&s->stats_lock);
    if (s->peers_state == 1) {
        s->peers_total = nk_hub_server_peers(s->core, nk__now_ms(), s->peers_out, s->peers_cap);
        s->peers_state = 2;
        pthread_cond_broadcast(&s->peers_cond);
    }
    pthread_mutex_unlock(&s->stats_lock);
}

static void *loop_main(void *arg)
{
    nk_hub_service *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int listen_on(nk_hub_service *s, uv_tcp_t *t, const nk_addr *a, nk_addr *bound)
{
    struct sockaddr_storage ss;
    unsigned len = sizeof(ss);
    if (nk_addr_to_sockaddr(a, (struct sockaddr *)&ss, &len) != 0)
        return NK_ERR_ADDRESS;
    uv_tcp_init(&s->loop, t);
    t->data = s;
    int r = uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)t, 1024, on_connection);
    if (r != 0) { /* libuv's errors are negated errno values on Unix */
        char text[NK_ADDR_STRLEN];
        nk__errctx_set(-r, "bind %s", nk_addr_format(a, text, sizeof(text)));
        errno = -r;
        return NK_ERR_SYSTEM;
    }
    return sock_addrs(t, bound, NULL);
}

static int tls_setup(nk_hub_service *s)
{
    if (s->opt.cert_file == NULL || s->opt.key_file == NULL)
        return NK_ERR_INVAL;
    int rc = nk__tls_files_check(s->opt.cert_file, s->opt.key_file);
    if (rc != 0)
        return rc;
    s->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (s->ssl_ctx == NULL)
        return NK_ERR_NOMEM;
    SSL_CTX_set_min_proto_version(s->ssl_ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(s->ssl_ctx, s->opt.cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(s->ssl_ctx, s->opt.key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(s->ssl_ctx) != 1) {
        ERR_clear_error();
        nk__errctx_set(0, "load certificate %s and key %s (not PEM, or the key does not match)", s->opt.cert_file,
                       s->opt.key_file);
        return NK_ERR_INVAL;
    }
    return 0;
}

static void cluster_process(void *ctx)
{
    process(ctx);
}

static int cluster_setup(nk_hub_service *s)
{
    nk__hub_cluster_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.redis = s->opt.redis;
    cc.password = s->opt.redis_password;
    cc.db = s->opt.redis_db;
    cc.ttl_ms = s->opt.redis_ttl_ms;
    cc.answer_ms = s->opt.server.forward_wait_ms; /* a Redis that answers nothing that long is gone */
    cc.announce = s->tcp_addr.family != NK_AF_NONE ? s->tcp_addr : s->tls_addr;
    cc.log = s->opt.cluster_log != NULL ? s->opt.cluster_log : s->opt.log;
    cc.log_ctx = s->opt.log_ctx;
    cc.process = cluster_process;
    cc.process_ctx = s;
    return nk__hub_cluster_new(&s->cluster, &s->loop, s->core, &cc);
}

static int service_setup(nk_hub_service *s)
{
    int rc;
    s->opt.server.cluster = s->opt.redis != NULL;
    /* A waiting sender hears by the time the TTL ends, and before its hub client's 45 s silence timeout
     * (the core caps it there too: a longer TTL does not hold a paused peer past it). */
    if (s->opt.server.cluster && s->opt.server.forward_wait_ms <= 0)
        s->opt.server.forward_wait_ms = s->opt.redis_ttl_ms >= 300 && s->opt.redis_ttl_ms < NK_HUB_FORWARD_WAIT_MAX_MS
                                            ? s->opt.redis_ttl_ms
                                            : NK_HUB_FORWARD_WAIT_MAX_MS;
    if (s->opt.listen.family == NK_AF_NONE && s->opt.tls_listen.family == NK_AF_NONE)
        return NK_ERR_INVAL;
    if (s->opt.tls_listen.family != NK_AF_NONE && (rc = tls_setup(s)) != 0)
        return rc;
    if ((rc = nk_hub_server_new(&s->core, &s->opt.server)) != 0)
        return rc;
    if (s->opt.listen.family != NK_AF_NONE) {
        s->have_tcp = 1;
        if ((rc = listen_on(s, &s->tcp_listener, &s->opt.listen, &s->tcp_addr)) != 0)
            return rc;
    }
    if (s->opt.tls_listen.family != NK_AF_NONE) {
        s->have_tls = 1;
        if ((rc = listen_on(s, &s->tls_listener, &s->opt.tls_listen, &s->tls_addr)) != 0)
            return rc;
    }
    return s->opt.redis != NULL ? cluster_setup(s) : 0;
}

static void service_destroy(nk_hub_service *s)
{
    /* Closes whatever is still open (listeners, timer, connections) and lets the callbacks run. */
    nk__hub_cluster_stop(s->cluster);
    uv_walk(&s->loop, close_any, s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    nk__hub_cluster_free(s->cluster);
    nk_hub_server_free(s->core);
    SSL_CTX_free(s->ssl_ctx);
    pthread_mutex_destroy(&s->stats_lock);
    pthread_mutex_destroy(&s->peers_lock);
    pthread_cond_destroy(&s->peers_cond);
    free(s);
}

int nk_hub_service_start(nk_hub_service **out, const nk_hub_service_options *o)
{
    if (out == NULL || o == NULL)
        return NK_ERR_INVAL;
    nk__errctx_clear();
    nk_hub_service *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NK_ERR_NOMEM;
    s->opt = *o;
    pthread_mutex_init(&s->stats_lock, NULL);
    pthread_mutex_init(&s->peers_lock, NULL);
    pthread_cond_init(&s->peers_cond, NULL);
    if (uv_loop_init(&s->loop) != 0) {
        pthread_mutex_destroy(&s->stats_lock);
        pthread_mutex_destroy(&s->peers_lock);
        pthread_cond_destroy(&s->peers_cond);
        free(s);
        return NK_ERR_SYSTEM;
    }
    if (o->raise_nofile)
        raise_nofile();
    uv_timer_init(&s->loop, &s->timer);
    s->timer.data = s;
    uv_async_init(&s->loop, &s->stop_async, on_stop);
    s->stop_async.data = s;
    uv_async_init(&s->loop, &s->peers_async, on_peers);
    s->peers_async.data = s;
    int rc = service_setup(s);
    if (rc == 0) {
        arm_timer(s);
        rc = pthread_create(&s->thread, NULL, loop_main, s) == 0 ? 0 : NK_ERR_SYSTEM;
    }
    if (rc != 0) {
        int saved = errno;
        service_destroy(s);
        errno = saved;
        return rc;
    }
    s->thread_started = 1;
    *out = s;
    return 0;
}

void nk_hub_service_addrs(const nk_hub_service *s, nk_addr *tcp, nk_addr *tls)
{
    if (tcp != NULL)
        *tcp = s->tcp_addr;
    if (tls != NULL)
        *tls = s->tls_addr;
}

int nk_hub_service_cluster_id(const nk_hub_service *s, char *buf, size_t cap)
{
    if (s == NULL || s->cluster == NULL)
        return NK_ERR_NOT_FOUND;
    if (buf == NULL || cap <= strlen(nk__hub_cluster_id(s->cluster)))
        return NK_ERR_NOBUFS;
    strcpy(buf, nk__hub_cluster_id(s->cluster));
    return 0;
}

void nk_hub_service_stats(nk_hub_service *s, nk_hub_stats_t *out)
{
    pthread_mutex_lock(&s->stats_lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->stats_lock);
}

int nk_hub_service_peers(nk_hub_service *s, nk_hub_peer_info *out, size_t cap, size_t *total)
{
    if (s == NULL || (out == NULL && cap > 0))
        return NK_ERR_INVAL;
    int rc;
    pthread_mutex_lock(&s->peers_lock);
    pthread_mutex_lock(&s->stats_lock);
    s->peers_out = out;
    s->peers_cap = cap;
    s->peers_state = 1;
    uv_async_send(&s->peers_async);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2; /* the loop answers at its next turn; this only guards a stopped one */
    while (s->peers_state != 2)
        if (pthread_cond_timedwait(&s->peers_cond, &s->stats_lock, &until) != 0)
            break;
    if (s->peers_state == 2) {
        rc = (int)(s->peers_total < cap ? s->peers_total : cap);
        if (total != NULL)
            *total = s->peers_total;
    } else {
        rc = NK_ERR_TIMEOUT; /* the request is withdrawn: the loop will not write into out */
    }
    s->peers_state = 0;
    s->peers_out = NULL;
    pthread_mutex_unlock(&s->stats_lock);
    pthread_mutex_unlock(&s->peers_lock);
    return rc;
}

void nk_hub_service_free(nk_hub_service *s)
{
    if (s == NULL)
        return;
    if (s->thread_started) {
        uv_async_send(&s->stop_async);
        pthread_join(s->thread, NULL);
    }
    service_destroy(s);
}
