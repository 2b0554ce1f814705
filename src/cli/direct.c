/*
 * natkit CLI: the loop behind `natkit accept` and `natkit dial`.
 *
 *   dial -> accept   HELLO (plaintext: nonce, local address), resent until the REPLY
 *   accept -> dial   REPLY (acceptor's peer ID, the address the HELLO came from)
 *   dial <-> accept  QUIC over that one UDP path (nk_quic; dial is the client expecting
 *                    the REPLY's (or the pinned) peer ID, accept the server taking any
 *                    authenticated client; both prove their Ed25519 identities in TLS)
 *   accept           TCP listener; nk_upgrade ANNOUNCE (framed on our control stream,
 *                    see direct_ctl.h); QUIC keepalives hold the UDP mapping
 *   dial             connects; both open an nk_tcpseal keyed from the QUIC exporter and
 *                    the announcement's token (nk_tcpseal_new_exported); the acceptor
 *                    keeps the first connection that authenticates and refuses the others
 *   both             stdin bytes -> TCP -> the peer's stdout; if TCP fails, over a QUIC
 *                    stream instead (said on stderr, and to the peer: it follows); the
 *                    side done first with UDP data lingers in QUIC's closing period
 * Status goes to stderr; stdout carries only what the peer sent.
 *
 * The acceptor commits to no address before a handshake authenticates: every address that
 * sends a QUIC Initial gets its own QUIC server (MAX_HALF at once); the first to complete its
 * handshake is the peer and the others are dropped. Datagrams dropped on the way are counted.
 * This file: UDP, HELLO/REPLY, QUIC connections, the loop. direct_tcp.c: the TCP side of the
 * upgrade. direct_data.c: the data phase.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "direct_ctl.h"
#include "direct_internal.h"
#include "natkit/udp.h"

#define say  direct_say
#define fail direct_fail
#define flush_quic direct_flush_quic

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void direct_say(dstate *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "natkit %s: ", st->o->cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

void direct_fail(dstate *st, int status)
{
    st->done = 1;
    st->status = status;
}

/* ---- printing ---- */

static const char *mapping_text(const nk_addr *local, const nk_addr *mapped)
{
    if (nk_addr_equal(local, mapped))
        return "no NAT on this path (the address is seen unchanged)";
    if (local->port == mapped->port)
        return "NAT: address translated, port preserved";
    return "NAT: address and port translated";
}

static void print_mapping(dstate *st, const char *who, const nk_addr *local, const nk_addr *mapped)
{
    char l[NK_ADDR_STRLEN], m[NK_ADDR_STRLEN];
    nk_addr_format(local, l, sizeof(l));
    nk_addr_format(mapped, m, sizeof(m));
    say(st, "%s UDP mapping: local %s is seen as %s: %s", who, l, m, mapping_text(local, mapped));
}

static void print_id(dstate *st, const char *what, const nk_peer_id *id)
{
    char text[NK_PEER_ID_STRLEN];
    nk_peer_id_format(id, text, sizeof(text));
    say(st, "%s %s", what, text);
}

/* ---- UDP ---- */

static void udp_send(dstate *st, const uint8_t *p, size_t n)
{
    if (st->have_peer_addr)
        nk_udp_send(st->udp, &st->peer_addr, p, n);
}

static void flush_to(dstate *st, nk_quic *q, const nk_addr *to, int64_t now)
{
    uint8_t buf[2048];
    int n;
    while ((n = nk_quic_poll_transmit(q, now, buf, sizeof(buf))) > 0)
        nk_udp_send(st->udp, to, buf, (size_t)n);
}

void direct_flush_quic(dstate *st, int64_t now)
{
    if (st->q != NULL && st->have_peer_addr)
        flush_to(st, st->q, &st->peer_addr, now);
}

/* What both sides' QUIC connections share. */
static void quic_config(dstate *st, nk_quic_config *c)
{
    memset(c, 0, sizeof(*c));
    c->identity = &st->id;
    c->keepalive_ms = KEEPALIVE_MS; /* holds the NATs' UDP mappings while TCP carries the data */
    c->idle_timeout_ms = IDLE_TIMEOUT_MS;
    c->handshake_timeout_ms = st->o->acceptor ? 15000 : st->o->timeout_ms + 1000;
}

static void send_hello(dstate *st, int64_t now)
{
    uint8_t buf[HELLO_LEN];
    int n = hello_encode(&st->hello, buf, sizeof(buf));
    if (n > 0)
        udp_send(st, buf, (size_t)n);
    st->hello_next_ms = now + HELLO_RTO_MS;
}

/* dial: the QUIC client, expecting the REPLY's (or the pinned) peer ID. */
static int start_client(dstate *st, int64_t now)
{
    nk_quic_config c;
    quic_config(st, &c);
    c.role = NK_QUIC_CLIENT;
    c.peer = st->o->have_peer_id ? &st->o->peer_id : &st->hello.id;
    /* The HELLO/REPLY measured the path: a lost Initial is resent after 3x that, not after 1 s,
     * which matters on a lossy path (the first retransmissions double from there) */
    c.initial_rtt_ms = st->hello_rtt_ms < 20 ? 20 : st->hello_rtt_ms > 333 ? 333 : st->hello_rtt_ms;
    int rc = nk_quic_new(&st->q, &c, now);
    if (rc != 0) {
        say(st, "cannot start QUIC: %s", nk_strerror(rc));
        fail(st, CLI_EXIT_FAIL);
        return rc;
    }
    flush_quic(st, now);
    return 0;
}

/* dial: the acceptor's REPLY names it and says how our mapping looks from there. */
static void on_reply(dstate *st, const hello_msg *h, const nk_addr *local, int64_t now)
{
    if (st->have_reply || memcmp(h->nonce, st->hello.nonce, 8) != 0)
        return;
    st->have_reply = 1;
    print_id(st, "acceptor's peer ID:", &h->id);
    if (st->o->have_peer_id && !nk_peer_id_equal(&h->id, &st->o->peer_id)) {
        say(st, "that is not the pinned --peer-id: refusing");
        fail(st, CLI_EXIT_FAIL);
        return;
    }
    say(st, st->o->have_peer_id ? "it matches --peer-id (pinned)"
                                : "trust on first use: compare it with the ID the acceptor printed (or pin it with --peer-id)");
    nk_addr l = *local;
    l.port = st->hello.addr.port;
    print_mapping(st, "our", &l, &h->addr);
    st->hello.id = h->id;
    st->hello_rtt_ms = now - (st->hello_next_ms - HELLO_RTO_MS); /* an older HELLO's REPLY: less */
    start_client(st, now);
}

/* accept: answer every HELLO (it is padded, so the answer is no bigger). */
static void on_hello(dstate *st, const hello_msg *h, const nk_addr *from)
{
    hello_msg r;
    uint8_t buf[HELLO_REPLY_LEN];
    memset(&r, 0, sizeof(r));
    r.reply = 1;
    memcpy(r.nonce, h->nonce, 8);
    r.id = st->id.id;
    r.addr = *from;
    int n = hello_encode(&r, buf, sizeof(buf));
    if (n > 0)
        nk_udp_send(st->udp, from, buf, (size_t)n);
    if (!st->have_peer_addr && !nk_addr_equal(from, &st->last_hello_from)) {
        st->last_hello_from = *from;
        print_mapping(st, "the dialer's", &h->addr, from);
    }
}

/* ---- accept: handshakes in progress, one per source address, until one authenticates ---- */

/* A datagram that can open a QUIC connection: a client's Initial (RFC 9000 17.2.2: long header,
 * type 0, version 1; the fixed bit is not looked at, ngtcp2 greases it, RFC 9287) in a datagram of
 * at least 1200 bytes (14.1). A HELLO never looks like one (its type bits say Handshake). */
static int quic_initial_like(const uint8_t *p, size_t n)
{
    return n >= 1200 && (p[0] & 0xB0) == 0x80 && p[1] == 0 && p[2] == 0 && p[3] == 0 && p[4] == 1;
}

static void drop_half(half *h)
{
    nk_quic_free(h->q);
    memset(h, 0, sizeof(*h));
}

static half *find_half(dstate *st, const nk_addr *from)
{
    for (int i = 0; i < MAX_HALF; i++)
        if (st->halves[i].q != NULL && nk_addr_equal(&st->halves[i].from, from))
            return &st->halves[i];
    return NULL;
}

/* A QUIC server for a new source address, accepting any client that proves its identity; the
 * oldest handshake makes room when all are busy. */
static half *new_half(dstate *st, const nk_addr *from, int64_t now)
{
    half *h = &st->halves[0];
    nk_quic_config c;
    for (int i = 1; i < MAX_HALF && h->q != NULL; i++)
        if (st->halves[i].q == NULL || st->halves[i].born < h->born)
            h = &st->halves[i];
    drop_half(h);
    quic_config(st, &c);
    c.role = NK_QUIC_SERVER;
    c.initial_rtt_ms = SERVER_INITIAL_RTT_MS;
    int rc = nk_quic_new(&h->q, &c, now);
    if (rc != 0) {
        say(st, "cannot start QUIC: %s", nk_strerror(rc));
        return NULL;
    }
    h->from = *from;
    h->born = now;
    return h;
}

/* The handshake from h authenticated (the client's Finished arrived, its key was checked): that
 * address is the peer's, and every other handshake goes. Its events (CONNECTED first) are left
 * for drive_quic. */
static void promote(dstate *st, half *h)
{
    st->q = h->q;
    st->peer_addr = h->from;
    st->have_peer_addr = 1;
    h->q = NULL;
    for (int i = 0; i < MAX_HALF; i++)
        drop_half(&st->halves[i]);
}

static void after_half(dstate *st, half *h, int64_t now)
{
    nk_quic_event ev;
    if (nk_quic_connected(h->q, NULL)) {
        promote(st, h);
        return;
    }
    flush_to(st, h->q, &h->from, now);
    while (nk_quic_poll_event(h->q, &ev) == 0)
        if (ev.type == NK_QUIC_EV_CLOSED) {
            drop_half(h);
            return;
        }
}

/* accept, before the peer is known: an Initial from a new address starts a handshake of its own;
 * one that does not open a connection ends it at once (nothing is committed to it). */
static void half_datagram(dstate *st, const uint8_t *p, size_t n, const nk_addr *from, int64_t now)
{
    int fresh = 0;
    half *h = find_half(st, from);
    if (h == NULL) {
        if (!quic_initial_like(p, n)) {
            st->dropped++;
            return;
        }
        if ((h = new_half(st, from, now)) == NULL)
            return;
        fresh = 1;
    }
    int rc = nk_quic_handle_datagram(h->q, now, p, n);
    if (rc != 0)
        st->dropped++;
    if (fresh && rc != 0)
        drop_half(h);
    else
        after_half(st, h, now);
}

static void drive_halves(dstate *st, int64_t now)
{
    for (int i = 0; i < MAX_HALF && st->q == NULL; i++) {
        half *h = &st->halves[i];
        if (h->q == NULL)
            continue;
        if (now >= nk_quic_next_deadline(h->q))
            nk_quic_handle_timeout(h->q, now);
        after_half(st, h, now);
    }
}

static void on_datagram(dstate *st, const uint8_t *p, size_t n, const nk_addr *from, const nk_addr *local,
                        int64_t now)
{
    hello_msg h;
    if (hello_is(p, n)) {
        if (hello_decode(&h, p, n) != 0)
            st->dropped++;
        else if (st->o->acceptor && !h.reply)
            on_hello(st, &h, from);
        else if (!st->o->acceptor && h.reply && nk_addr_equal(from, &st->peer_addr))
            on_reply(st, &h, local, now);
        return;
    }
    if (st->o->acceptor && st->q == NULL) {
        half_datagram(st, p, n, from, now);
        return;
    }
    if (st->q == NULL || !nk_addr_equal(from, &st->peer_addr)) {
        st->dropped++; /* one peer, one path */
        return;
    }
    if (nk_quic_handle_datagram(st->q, now, p, n) != 0)
        st->dropped++;
}

static void read_udp(dstate *st, int64_t now)
{
    uint8_t buf[2048];
    nk_addr from, local;
    for (int i = 0; i < 64; i++) {
        int n = nk_udp_recv(st->udp, buf, sizeof(buf), &from, &local);
        if (n < 0)
            return;
        on_datagram(st, buf, (size_t)n, &from, &local, now);
    }
}

/* ---- the QUIC connection's events and the control stream ---- */

static void on_session_up(dstate *st, int64_t now)
{
    nk_quic_stats_t qs;
    nk_peer_id peer;
    st->session_up = 1;
    st->session_up_ms = now;
    nk_quic_stats(st->q, &qs);
    nk_quic_connected(st->q, &peer);
    print_id(st, "secure session up with peer ID", &peer);
    say(st, "(QUIC over UDP, TLS 1.3 with both peers' Ed25519 keys, rtt %lld ms)", (long long)(qs.srtt_us / 1000));
    if (st->dropped > 0)
        say(st, "ignored %llu datagram%s before that (not authenticated, or from another address)",
            (unsigned long long)st->dropped, st->dropped == 1 ? "" : "s");
    if (nk_quic_stream_open(st->q, &st->ctl_tx) != 0) {
        say(st, "cannot open the control stream");
        fail(st, CLI_EXIT_FAIL);
        return;
    }
    if (st->o->no_tcp) {
        say(st, "--udp-only: the data goes over the UDP session");
        direct_go_udp(st, now);
    } else if (st->o->acceptor)
        direct_start_announce(st, now);
}

/* Frames a control message onto our control stream (see direct_ctl.h): 0, or NK_ERR_AGAIN when the
 * buffer is full (the message is not sent: nk_upgrade resends its own, 'U' goes out first, into an
 * empty buffer, and the pump asks again with its "delivered"). */
int direct_ctl_send(dstate *st, const uint8_t *msg, size_t n)
{
    int k = ctl_frame_put(st->ctl_out + st->ctl_out_len, sizeof(st->ctl_out) - st->ctl_out_len, msg, n);
    if (k <= 0)
        return NK_ERR_AGAIN;
    st->ctl_out_len += (size_t)k;
    return 0;
}

/* Everything we wrote on our control stream (our "delivered" among it) reached the peer. */
int direct_ctl_acked(const dstate *st)
{
    return st->ctl_out_len == 0 && (st->ctl_tx < 0 || nk_quic_stream_unacked(st->q, st->ctl_tx) == 0);
}

static void ctl_flush(dstate *st)
{
    if (st->ctl_tx < 0 || st->ctl_out_len == 0)
        return;
    int k = nk_quic_stream_write(st->q, st->ctl_tx, st->ctl_out, st->ctl_out_len);
    if (k > 0) {
        memmove(st->ctl_out, st->ctl_out + k, st->ctl_out_len - (size_t)k);
        st->ctl_out_len -= (size_t)k;
    }
}

/* The peer's control stream: framed messages, nk_upgrade's or the CLI's. A bad frame ends the run. */
static void ctl_read(dstate *st, int64_t now)
{
    const uint8_t *m;
    size_t ml;
    int n, k;
    while (st->ctl_rx >= 0 && !st->done) {
        n = nk_quic_stream_read(st->q, st->ctl_rx, st->ctl_in + st->ctl_in_len, sizeof(st->ctl_in) - st->ctl_in_len);
        if (n <= 0)
            return; /* nothing yet; the peer never ends its control stream on purpose */
        st->ctl_in_len += (size_t)n;
        size_t off = 0;
        while ((k = ctl_frame_next(st->ctl_in + off, st->ctl_in_len - off, &m, &ml)) > 0) {
            off += (size_t)k;
            if (nk_upgrade_is_message(m, ml))
                nk_upgrade_handle_message(st->u, now, m, ml);
            else
                direct_on_message(st, m, ml, now);
        }
        if (k < 0) {
            say(st, "malformed control stream from the peer");
            nk_quic_close(st->q, now, 1);
            fail(st, CLI_EXIT_FAIL);
            return;
        }
        memmove(st->ctl_in, st->ctl_in + off, st->ctl_in_len - off);
        st->ctl_in_len -= off;
    }
}

/* A stream the peer opened: its control stream or its data stream (by sequence number); anything
 * else is reset. We never send on the peer's streams: our direction ends at once. */
static void on_stream_opened(dstate *st, int64_t id)
{
    if ((id >> 2) == STREAM_CTL && st->ctl_rx < 0)
        st->ctl_rx = id;
    else if ((id >> 2) == STREAM_DAT && st->dat_rx < 0)
        st->dat_rx = id;
    else {
        nk_quic_stream_reset(st->q, id, 1);
        return;
    }
    nk_quic_stream_shutdown(st->q, id);
}

static void drive_upgrade(dstate *st, int64_t now)
{
    nk_upgrade_event uev;
    uint8_t msg[NK_UPGRADE_MAX_MESSAGE];
    int n;
    nk_upgrade_handle_timeout(st->u, now);
    while (st->session_up && (n = nk_upgrade_poll_message(st->u, now, msg, sizeof(msg))) > 0)
        direct_ctl_send(st, msg, (size_t)n);
    while (nk_upgrade_poll_event(st->u, &uev) == 0)
        direct_on_upgrade_event(st, &uev, now);
}

static void drive_quic(dstate *st, int64_t now)
{
    nk_quic_event ev;
    if (st->q == NULL)
        return;
    if (now >= nk_quic_next_deadline(st->q))
        nk_quic_handle_timeout(st->q, now);
    while (nk_quic_poll_event(st->q, &ev) == 0) {
        if (ev.type == NK_QUIC_EV_CONNECTED)
            on_session_up(st, now);
        else if (ev.type == NK_QUIC_EV_STREAM_OPENED)
            on_stream_opened(st, ev.stream_id);
        else if (ev.type == NK_QUIC_EV_CLOSED)
            direct_on_closed(st, &ev, now);
    }
    ctl_read(st, now);
    drive_upgrade(st, now);
    ctl_flush(st);
    flush_quic(st, now);
}

/* dial: no announcement (and no 'U') within ANNOUNCE_WAIT_MS of the session: carry the data over it. */
static void check_announce_wait(dstate *st, int64_t now)
{
    if (st->o->acceptor || !st->session_up || st->announced || st->udp_fallback || st->tcp_up ||
        now < st->session_up_ms + ANNOUNCE_WAIT_MS)
        return;
    say(st, "no TCP announcement within %d s: staying on the UDP session", ANNOUNCE_WAIT_MS / 1000);
    direct_go_udp(st, now);
}

/* ---- the loop ---- */

static int64_t next_deadline(const dstate *st, int64_t now)
{
    int64_t d = now + 1000;
    if (!st->o->acceptor && !st->have_reply && st->hello_next_ms < d)
        d = st->hello_next_ms;
    if (st->q != NULL && nk_quic_next_deadline(st->q) < d)
        d = nk_quic_next_deadline(st->q);
    for (int i = 0; i < MAX_HALF; i++)
        if (st->halves[i].q != NULL && nk_quic_next_deadline(st->halves[i].q) < d)
            d = nk_quic_next_deadline(st->halves[i].q);
    if (nk_upgrade_next_deadline(st->u) < d)
        d = nk_upgrade_next_deadline(st->u);
    d = direct_tcp_deadline(st, d);
    if ((st->ts != NULL && nk_tcp_stream_ready(st->ts)) || direct_io_busy(st))
        d = now;
    return d;
}

static nfds_t build_pollfds(dstate *st, struct pollfd *pf)
{
    nfds_t n = 0;
    short ie, oe;
    pf[n++] = (struct pollfd){st->udp, POLLIN, 0};
    direct_io_wants(st, &ie, &oe); /* the pump: stdin when the carrier took the last read, stdout when
                                    * bytes wait for it */
    if (ie != 0)
        pf[n++] = (struct pollfd){STDIN_FILENO, ie, 0};
    if (oe != 0)
        pf[n++] = (struct pollfd){STDOUT_FILENO, oe, 0};
    if (st->lfd >= 0)
        pf[n++] = (struct pollfd){st->lfd, POLLIN, 0};
    if (st->cfd >= 0)
        pf[n++] = (struct pollfd){st->cfd, POLLOUT, 0};
    if (st->ts != NULL)
        pf[n++] = (struct pollfd){nk_tcp_stream_fd(st->ts), nk_tcp_stream_events(st->ts), 0};
    for (int i = 0; i < MAX_CAND; i++)
        if (st->cands[i].ts != NULL)
            pf[n++] = (struct pollfd){nk_tcp_stream_fd(st->cands[i].ts), POLLIN, 0};
    return n;
}

static void step(dstate *st, const struct pollfd *pf, nfds_t npf, int64_t now)
{
    short in_rev = 0, out_rev = 0;
    read_udp(st, now);
    for (nfds_t i = 1; i < npf; i++) {
        if (pf[i].fd == STDIN_FILENO)
            in_rev = pf[i].revents;
        if (pf[i].fd == STDOUT_FILENO)
            out_rev = pf[i].revents;
        if (pf[i].fd == st->lfd && (pf[i].revents & POLLIN))
            direct_accept_one(st, now);
    }
    if (!st->o->acceptor && !st->have_reply && now >= st->hello_next_ms)
        send_hello(st, now);
    drive_halves(st, now);
    drive_quic(st, now);
    check_announce_wait(st, now);
    if (st->o->acceptor)
        direct_check_cands(st, now);
    else
        direct_dial_progress(st, now);
    direct_drive_data(st, in_rev, out_rev, now);
    if (st->q != NULL) { /* what the data phase and the upgrade events wrote */
        ctl_flush(st);
        flush_quic(st, now);
    }
    if (!st->session_up && !st->o->acceptor && now - st->start_ms > st->o->timeout_ms) {
        say(st, "no answer from the acceptor within %ld s", st->o->timeout_ms / 1000);
        fail(st, CLI_EXIT_FAIL);
    }
}

/* The address to print for `accept`: --advertise-ip, else the first IPv4 address of an interface that is up and
 * not loopback. */
static void pick_advertise(const dstate *st, nk_addr *out)
{
    struct ifaddrs *ifs, *i;
    *out = st->o->advertise;
    if (out->family != NK_AF_NONE || getifaddrs(&ifs) != 0)
        return;
    for (i = ifs; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) != 0 ||
            (i->ifa_flags & IFF_UP) == 0)
            continue;
        if (nk_addr_from_sockaddr(out, i->ifa_addr) == 0)
            break;
    }
    freeifaddrs(ifs);
    if (out->family == NK_AF_NONE)
        nk_addr_parse_ip(out, "127.0.0.1");
}

/* The local IP the kernel would use toward peer (a connected UDP socket sends nothing). */
static void local_toward(const nk_addr *peer, nk_addr *local)
{
    struct sockaddr_storage ss;
    unsigned sl;
    socklen_t gl = sizeof(ss);
    nk_addr got;
    if (nk_addr_to_sockaddr(peer, (struct sockaddr *)&ss, &sl) != 0)
        return;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&ss, sl) == 0 && getsockname(fd, (struct sockaddr *)&ss, &gl) == 0 &&
        nk_addr_from_sockaddr(&got, (struct sockaddr *)&ss) == 0) {
        memcpy(local->ip, got.ip, sizeof(got.ip));
        local->family = got.family;
    }
    close(fd);
}

static int open_udp(dstate *st)
{
    char text[NK_ADDR_STRLEN];
    nk_addr local, shown;
    st->udp = nk_udp_open(&st->o->bind, 0);
    if (st->udp < 0) {
        say(st, "cannot bind UDP %s: %s", nk_addr_format(&st->o->bind, text, sizeof(text)), strerror(errno));
        return -1;
    }
    nk_udp_local(st->udp, &local);
    print_id(st, "my peer ID is", &st->id.id);
    if (st->o->acceptor) {
        pick_advertise(st, &shown);
        shown.port = local.port;
        fprintf(stderr, "UDP listen addr to share: %s\n", nk_addr_format(&shown, text, sizeof(text)));
        fflush(stderr);
        return 0;
    }
    st->hello.addr = local;
    local_toward(&st->o->peer, &st->hello.addr);
    randombytes_buf(st->hello.nonce, sizeof(st->hello.nonce));
    st->peer_addr = st->o->peer;
    st->have_peer_addr = 1;
    return 0;
}

/* Data phase done here first: close the QUIC connection and stay a little, answering the
 * datagrams the peer still sends with the CONNECTION_CLOSE again (QUIC's closing period). The
 * peer may be waiting for the acknowledgement of its FIN (UDP) or of its "delivered", which the
 * close stands for; without this a lost close would leave it waiting for its idle timeout. Ends LINGER_QUIET_MS after the
 * peer's last datagram, LINGER_MAX_MS at most. nk_quic limits the rate of the answers (the
 * peer's 1st, 2nd, 4th, 8th, ... datagram, RFC 9000 10.2.1), so two sides that closed at once,
 * each answering the other's close, fall silent after a few rounds. */
static void linger(dstate *st)
{
    uint8_t buf[2048];
    nk_addr from, local;
    int64_t start = now_ms(), last = start;
    if (nk_quic_close(st->q, start, 0) != 0)
        return;
    flush_quic(st, start);
    while (!cli_stop_requested) {
        int64_t now = now_ms(), end = last + LINGER_QUIET_MS;
        if (end > start + LINGER_MAX_MS)
            end = start + LINGER_MAX_MS;
        if (now >= end)
            break;
        struct pollfd pf = {st->udp, POLLIN, 0};
        if (poll(&pf, 1, (int)(end - now)) <= 0)
            continue;
        int n;
        while ((n = nk_udp_recv(st->udp, buf, sizeof(buf), &from, &local)) >= 0)
            if (nk_addr_equal(&from, &st->peer_addr)) {
                nk_quic_handle_datagram(st->q, now_ms(), buf, (size_t)n);
                last = now_ms();
                flush_quic(st, last);
            }
    }
}

static void cleanup(dstate *st)
{
    if (st->dropped > 0 && st->session_up)
        say(st, "dropped %llu datagram%s in all (not authenticated, or not from the peer's address)",
            (unsigned long long)st->dropped, st->dropped == 1 ? "" : "s");
    for (int i = 0; i < MAX_HALF; i++)
        nk_quic_free(st->halves[i].q);
    /* the CONNECTION_CLOSE; the peer takes it as the end, and prints why when it was not one */
    const char *why = st->status == CLI_EXIT_OK ? NULL : cli_stop_requested ? "stopped" : "failed";
    if (st->q != NULL && nk_quic_close_ex(st->q, now_ms(), 0, why) == 0)
        flush_quic(st, now_ms());
    nk_tcp_stream_free(st->ts);
    for (int i = 0; i < MAX_CAND; i++)
        nk_tcp_stream_free(st->cands[i].ts);
    if (st->lfd >= 0)
        close(st->lfd);
    if (st->cfd >= 0)
        close(st->cfd);
    if (st->udp >= 0)
        close(st->udp);
    nk_upgrade_free(st->u);
    nk_quic_free(st->q);
    fwd_pump_free(&st->io);
    nk_identity_wipe(&st->id);
}

int direct_run(direct_opts *o)
{
    static dstate st; /* big buffers; one per process */
    memset(&st, 0, sizeof(st));
    st.o = o;
    st.udp = st.lfd = st.cfd = -1;
    st.ctl_tx = st.ctl_rx = st.dat_tx = st.dat_rx = -1;
    st.start_ms = now_ms();
    nk_upgrade_config uc = {.acceptor = o->acceptor};
    if (direct_io_init(&st) != 0 || cli_load_key(o->cmd, o->key_file, &st.id) != 0 || nk_upgrade_new(&st.u, &uc) != 0 ||
        open_udp(&st) != 0) {
        cleanup(&st);
        return CLI_EXIT_FAIL;
    }
    cli_install_stop_signals();
    struct pollfd pf[5 + MAX_CAND];
    while (!st.done && !cli_stop_requested) {
        int64_t now = now_ms();
        nfds_t n = build_pollfds(&st, pf);
        int64_t wait = next_deadline(&st, now) - now;
        if (poll(pf, n, wait < 0 ? 0 : (int)wait) < 0 && errno != EINTR) {
            say(&st, "the event loop failed: poll: %s", strerror(errno));
            fail(&st, CLI_EXIT_FAIL); /* not done: not exit 0 */
            break;
        }
        step(&st, pf, n, now_ms());
    }
    if (!st.done && cli_stop_requested)
        st.status = direct_stop_status(&st);
    else if (st.done && st.status == CLI_EXIT_OK && st.q != NULL)
        linger(&st);
    cleanup(&st);
    return st.status;
}
