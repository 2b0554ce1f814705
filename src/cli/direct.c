/*
 * natkit CLI: the loop behind `natkit accept` and `natkit dial`.
 *
 *   dial -> accept   HELLO (plaintext: nonce, local address), resent until the REPLY
 *   accept -> dial   REPLY (acceptor's peer ID, the address the HELLO came from)
 *   dial <-> accept  Noise IK session over that one UDP path (peer ID proved)
 *   accept           TCP listener; nk_upgrade ANNOUNCE (sealed session messages,
 *                    resent until ACKed); session keepalives hold the UDP mapping
 *   dial             connects; both open an nk_tcpseal keyed from the session and the
 *                    announcement's token; the acceptor keeps the first connection
 *                    that authenticates and refuses the others
 *   both             stdin bytes -> TCP -> the peer's stdout; if TCP fails, over the
 *                    UDP session instead (said on stderr, and to the peer: it follows)
 * Status goes to stderr; stdout carries only what the peer sent.
 *
 * The acceptor commits to no address before a handshake authenticates: every address that
 * sends an INIT gets its own responder session (MAX_HALF at once); the first to confirm its
 * keys is the peer and the others are dropped. Datagrams dropped on the way are counted.
 * This file: UDP, HELLO/REPLY, sessions, the loop. direct_tcp.c: the TCP side of the
 * upgrade. direct_data.c: the data phase.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <limits.h>
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
#include "direct_internal.h"
#include "natkit/udp.h"

#define say  direct_say
#define fail direct_fail
#define flush_session direct_flush_session

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

/* ---- identity ---- */

int direct_load_key(const char *cmd, const char *file, nk_identity *id)
{
    char path[PATH_MAX];
    if (file == NULL) {
        if (nk_identity_default_path(path, sizeof(path)) != 0) {
            fprintf(stderr, "natkit %s: no default key path (set HOME or use --key)\n", cmd);
            return -1;
        }
        file = path;
        if (access(file, F_OK) != 0) {
            if (nk_identity_generate(id) != 0 || nk_identity_save(id, file) != 0) {
                fprintf(stderr, "natkit %s: could not create a key at %s\n", cmd, file);
                return -1;
            }
            fprintf(stderr, "natkit %s: made a new identity key at %s\n", cmd, file);
            return 0;
        }
    }
    int rc = nk_identity_load(id, file);
    if (rc != 0) {
        fprintf(stderr, "natkit %s: cannot load key %s: %s\n", cmd, file, nk_strerror(rc));
        return -1;
    }
    return 0;
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

static void flush_to(dstate *st, nk_session *s, const nk_addr *to, int64_t now)
{
    uint8_t buf[2048];
    nk_session_transmit tx;
    while (nk_session_poll_transmit(s, now, &tx, buf, sizeof(buf)) == 0)
        nk_udp_send(st->udp, to, buf, tx.len);
}

void direct_flush_session(dstate *st, int64_t now)
{
    if (st->s != NULL && st->have_peer_addr)
        flush_to(st, st->s, &st->peer_addr, now);
}

static void send_hello(dstate *st, int64_t now)
{
    uint8_t buf[HELLO_LEN];
    int n = hello_encode(&st->hello, buf, sizeof(buf));
    if (n > 0)
        udp_send(st, buf, (size_t)n);
    st->hello_next_ms = now + HELLO_RTO_MS;
}

static int start_initiator(dstate *st, int64_t now)
{
    nk_session_config c;
    memset(&c, 0, sizeof(c));
    c.identity = &st->id;
    c.peer = st->o->have_peer_id ? &st->o->peer_id : &st->hello.id;
    c.initiator = 1;
    c.keepalive_ms = 5000; /* holds the NAT's UDP mapping while TCP carries the data */
    int rc = nk_session_new(&st->s, &c, now);
    if (rc == 0)
        rc = nk_session_connect(st->s, PATH_ID, now);
    if (rc != 0) {
        say(st, "cannot start the session: %s", nk_strerror(rc));
        fail(st, CLI_EXIT_FAIL);
    }
    return rc;
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
    start_initiator(st, now);
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

static void drop_half(half *h)
{
    nk_session_free(h->s);
    memset(h, 0, sizeof(*h));
}

static half *find_half(dstate *st, const nk_addr *from)
{
    for (int i = 0; i < MAX_HALF; i++)
        if (st->halves[i].s != NULL && nk_addr_equal(&st->halves[i].from, from))
            return &st->halves[i];
    return NULL;
}

/* A responder session for a new source address; the oldest handshake makes room when all are busy. */
static half *new_half(dstate *st, const nk_addr *from, int64_t now)
{
    half *h = &st->halves[0];
    nk_session_config c;
    for (int i = 1; i < MAX_HALF && h->s != NULL; i++)
        if (st->halves[i].s == NULL || st->halves[i].born < h->born)
            h = &st->halves[i];
    drop_half(h);
    memset(&c, 0, sizeof(c));
    c.identity = &st->id;
    c.keepalive_ms = 5000;
    int rc = nk_session_new(&h->s, &c, now);
    if (rc != 0) {
        say(st, "cannot start a session: %s", nk_strerror(rc));
        return NULL;
    }
    h->from = *from;
    h->born = now;
    return h;
}

/* The handshake from h authenticated (the dialer's first data packet confirmed the keys): that
 * address is the peer's, and every other handshake goes. */
static void promote(dstate *st, half *h)
{
    st->s = h->s;
    st->peer_addr = h->from;
    st->have_peer_addr = 1;
    h->s = NULL;
    for (int i = 0; i < MAX_HALF; i++)
        drop_half(&st->halves[i]);
}

static void after_half(dstate *st, half *h, int64_t now)
{
    flush_to(st, h->s, &h->from, now);
    if (nk_session_state(h->s) == NK_SESSION_CONNECTED)
        promote(st, h);
    else if (nk_session_state(h->s) == NK_SESSION_CLOSED)
        drop_half(h);
}

/* accept, before a session is up: an INIT from a new address starts a handshake of its own; an
 * INIT that does not authenticate ends it at once (nothing is committed to it). */
static void half_datagram(dstate *st, const uint8_t *p, size_t n, const nk_addr *from, int64_t now)
{
    int type, fresh = 0;
    uint32_t idx;
    half *h = find_half(st, from);
    if (h == NULL) {
        if (nk_session_peek(p, n, &type, &idx) != 0 || type != NK_SESSION_PKT_INIT) {
            st->dropped++;
            return;
        }
        if ((h = new_half(st, from, now)) == NULL)
            return;
        fresh = 1;
    }
    int rc = nk_session_handle_datagram(h->s, now, PATH_ID, p, n);
    if (rc != 0 && rc != NK_ERR_AGAIN)
        st->dropped++;
    if (fresh && rc != 0)
        drop_half(h);
    else
        after_half(st, h, now);
}

static void drive_halves(dstate *st, int64_t now)
{
    for (int i = 0; i < MAX_HALF && st->s == NULL; i++) {
        half *h = &st->halves[i];
        if (h->s == NULL)
            continue;
        if (now >= nk_session_next_deadline(h->s))
            nk_session_handle_timeout(h->s, now);
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
    if (st->o->acceptor && st->s == NULL) {
        half_datagram(st, p, n, from, now);
        return;
    }
    if (st->s == NULL || !nk_addr_equal(from, &st->peer_addr)) {
        st->dropped++; /* one peer, one path */
        return;
    }
    int rc = nk_session_handle_datagram(st->s, now, PATH_ID, p, n);
    if (rc != 0 && rc != NK_ERR_AGAIN)
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

/* ---- the session's events and messages ---- */

static void on_session_up(dstate *st, int64_t now)
{
    nk_session_stats_t ss;
    st->session_up = 1;
    st->session_up_ms = now;
    nk_session_stats(st->s, &ss);
    print_id(st, "secure session up with peer ID", nk_session_peer(st->s));
    say(st, "(Noise IK over UDP, rtt %lld ms)", (long long)ss.srtt_ms);
    if (st->dropped > 0)
        say(st, "ignored %llu datagram%s before that (not authenticated, or from another address)",
            (unsigned long long)st->dropped, st->dropped == 1 ? "" : "s");
    if (st->o->no_tcp) {
        say(st, "--udp-only: the data goes over the UDP session");
        direct_go_udp(st, now);
    } else if (st->o->acceptor)
        direct_start_announce(st, now);
}

static void session_messages(dstate *st, int64_t now)
{
    static uint8_t buf[NK_SESSION_MAX_MESSAGE];
    int n;
    while ((n = nk_session_recv(st->s, buf, sizeof(buf))) > 0) {
        if (nk_upgrade_is_message(buf, (size_t)n))
            nk_upgrade_handle_message(st->u, now, buf, (size_t)n);
        else
            direct_on_message(st, buf, (size_t)n, now);
    }
    fflush(stdout);
}

static void drive_upgrade(dstate *st, int64_t now)
{
    nk_upgrade_event uev;
    uint8_t msg[NK_UPGRADE_MAX_MESSAGE];
    int n;
    nk_upgrade_handle_timeout(st->u, now);
    while (st->session_up && (n = nk_upgrade_poll_message(st->u, now, msg, sizeof(msg))) > 0)
        nk_session_send(st->s, msg, (size_t)n); /* a full queue loses it; nk_upgrade resends */
    while (nk_upgrade_poll_event(st->u, &uev) == 0)
        direct_on_upgrade_event(st, &uev, now);
}

static void drive_session(dstate *st, int64_t now)
{
    nk_session_event ev;
    if (st->s == NULL)
        return;
    if (now >= nk_session_next_deadline(st->s))
        nk_session_handle_timeout(st->s, now);
    while (nk_session_poll_event(st->s, &ev) == 0) {
        if (ev.type == NK_SESSION_EV_CONNECTED)
            on_session_up(st, now);
        else if (ev.type == NK_SESSION_EV_CLOSED)
            direct_on_closed(st, ev.err, now);
    }
    session_messages(st, now);
    drive_upgrade(st, now);
    flush_session(st, now);
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

static int data_phase(const dstate *st)
{
    return st->tcp_up || st->udp_fallback;
}

static int64_t next_deadline(const dstate *st, int64_t now)
{
    int64_t d = now + 1000;
    if (!st->o->acceptor && !st->have_reply && st->hello_next_ms < d)
        d = st->hello_next_ms;
    if (st->s != NULL && nk_session_next_deadline(st->s) < d)
        d = nk_session_next_deadline(st->s);
    for (int i = 0; i < MAX_HALF; i++)
        if (st->halves[i].s != NULL && nk_session_next_deadline(st->halves[i].s) < d)
            d = nk_session_next_deadline(st->halves[i].s);
    if (nk_upgrade_next_deadline(st->u) < d)
        d = nk_upgrade_next_deadline(st->u);
    d = direct_tcp_deadline(st, d);
    if (st->ts != NULL && nk_tcp_stream_ready(st->ts))
        d = now;
    return d;
}

static nfds_t build_pollfds(dstate *st, struct pollfd *pf)
{
    nfds_t n = 0;
    pf[n++] = (struct pollfd){st->udp, POLLIN, 0};
    if (data_phase(st) && st->stdin_open && st->in_len == 0)
        pf[n++] = (struct pollfd){STDIN_FILENO, POLLIN, 0};
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
    read_udp(st, now);
    for (nfds_t i = 1; i < npf; i++) {
        if (pf[i].fd == STDIN_FILENO && (pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
            direct_read_stdin(st);
        if (pf[i].fd == st->lfd && (pf[i].revents & POLLIN))
            direct_accept_one(st, now);
    }
    if (!st->o->acceptor && !st->have_reply && now >= st->hello_next_ms)
        send_hello(st, now);
    drive_halves(st, now);
    drive_session(st, now);
    check_announce_wait(st, now);
    if (st->o->acceptor)
        direct_check_cands(st, now);
    else
        direct_dial_progress(st, now);
    direct_drive_data(st, now);
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

static void cleanup(dstate *st)
{
    if (st->dropped > 0 && st->session_up)
        say(st, "dropped %llu datagram%s in all (not authenticated, or not from the peer's address)",
            (unsigned long long)st->dropped, st->dropped == 1 ? "" : "s");
    for (int i = 0; i < MAX_HALF; i++)
        nk_session_free(st->halves[i].s);
    if (st->s != NULL) {
        nk_session_close(st->s, now_ms());
        flush_session(st, now_ms());
    }
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
    nk_session_free(st->s);
    nk_identity_wipe(&st->id);
}

int direct_run(direct_opts *o)
{
    static dstate st; /* big buffers; one per process */
    memset(&st, 0, sizeof(st));
    st.o = o;
    st.udp = st.lfd = st.cfd = -1;
    st.stdin_open = 1;
    st.start_ms = now_ms();
    nk_upgrade_config uc = {.acceptor = o->acceptor};
    if (direct_load_key(o->cmd, o->key_file, &st.id) != 0 || nk_upgrade_new(&st.u, &uc) != 0 || open_udp(&st) != 0) {
        cleanup(&st);
        return CLI_EXIT_FAIL;
    }
    cli_install_stop_signals();
    struct pollfd pf[4 + MAX_CAND];
    while (!st.done && !cli_stop_requested) {
        int64_t now = now_ms();
        nfds_t n = build_pollfds(&st, pf);
        int64_t wait = next_deadline(&st, now) - now;
        if (poll(pf, n, wait < 0 ? 0 : (int)wait) < 0 && errno != EINTR)
            break;
        step(&st, pf, n, now_ms());
    }
    if (!st.done && cli_stop_requested)
        st.status = direct_stop_status(&st);
    cleanup(&st);
    return st.status;
}
