/*
 * natkit: the TURN service's batched UDP sends. Datagrams queued for one
 * socket go out in one sendmmsg; runs of datagrams to the same destination
 * with the same size (the last may be shorter) become one UDP GSO send
 * (UDP_SEGMENT), so the kernel routes and builds one packet where it would
 * have built many. The receiver still gets separate datagrams.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

#include "turn_service_internal.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define GSO_MAX_SEGS  64
#define GSO_MAX_BYTES 65000
#define GSO_MAX_SEG   1400 /* larger datagrams go one by one (a GSO segment may not exceed the MTU) */

typedef union gso_ctl {
    struct cmsghdr align;
    uint8_t buf[CMSG_SPACE(sizeof(uint16_t))];
} gso_ctl;

int nk__ts_gso_probe(int fd)
{
    int v = 0; /* setting 0 is harmless: per-send cmsgs choose the size */
    return setsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, sizeof(v)) == 0;
}

static int same_dest(const struct msghdr *a, const struct msghdr *b)
{
    return a->msg_namelen == b->msg_namelen && memcmp(a->msg_name, b->msg_name, a->msg_namelen) == 0;
}

/* A GSO send the kernel refused (e.g. a segment above the path MTU): its datagrams one by one. */
static void send_split(int fd, const struct msghdr *h)
{
    for (size_t i = 0; i < h->msg_iovlen; i++) {
        struct msghdr one = {.msg_name = h->msg_name, .msg_namelen = h->msg_namelen, .msg_iov = &h->msg_iov[i],
                             .msg_iovlen = 1};
        sendmsg(fd, &one, MSG_DONTWAIT);
    }
}

static void sendmmsg_all(int fd, struct mmsghdr *msg, unsigned count)
{
    unsigned done = 0;
    while (done < count) {
        int n = sendmmsg(fd, msg + done, count - done, MSG_DONTWAIT);
        if (n > 0) {
            done += (unsigned)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            if (msg[done].msg_hdr.msg_controllen > 0)
                send_split(fd, &msg[done].msg_hdr);
            done++; /* one bad destination: skip it, send the rest */
            continue;
        }
        break; /* the socket buffer is full: UDP may drop */
    }
}

static void set_segment(struct msghdr *h, gso_ctl *ctl, uint16_t size)
{
    memset(ctl, 0, sizeof(*ctl));
    h->msg_control = ctl->buf;
    h->msg_controllen = sizeof(ctl->buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(h);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &size, sizeof(size));
}

void nk__ts_send_batch(int fd, const struct mmsghdr *in, unsigned n, int gso)
{
    struct mmsghdr out[NK__TS_RB];
    struct iovec iov[NK__TS_RB];
    gso_ctl ctl[NK__TS_RB];
    uint8_t done[NK__TS_RB] = {0};
    unsigned k = 0, v = 0;
    if (!gso || n > NK__TS_RB) {
        sendmmsg_all(fd, (struct mmsghdr *)in, n);
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        if (done[i])
            continue;
        struct msghdr *h = &out[k].msg_hdr;
        size_t seg = in[i].msg_hdr.msg_iov[0].iov_len, total = 0, segs = 0;
        *h = (struct msghdr){.msg_name = in[i].msg_hdr.msg_name, .msg_namelen = in[i].msg_hdr.msg_namelen,
                             .msg_iov = &iov[v]};
        for (unsigned j = i; j < n; j++) {
            size_t len = in[j].msg_hdr.msg_iov[0].iov_len;
            if (done[j] || !same_dest(&in[i].msg_hdr, &in[j].msg_hdr))
                continue;
            if (segs > 0 && (len > seg || seg > GSO_MAX_SEG || segs == GSO_MAX_SEGS || total + len > GSO_MAX_BYTES))
                break;
            iov[v++] = in[j].msg_hdr.msg_iov[0];
            done[j] = 1;
            total += len;
            segs++;
            if (len < seg)
                break; /* a shorter datagram ends a GSO run */
        }
        h->msg_iovlen = segs;
        if (segs > 1)
            set_segment(h, &ctl[k], (uint16_t)seg);
        k++;
    }
    sendmmsg_all(fd, out, k);
}
