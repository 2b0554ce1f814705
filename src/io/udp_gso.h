/* natkit internal (io): batched UDP sends with UDP GSO, implemented in turn_service_gso.c and
 * shared by the TURN service and the node driver. */
#ifndef NK__UDP_GSO_H
#define NK__UDP_GSO_H

#include <sys/socket.h>

#define NK__GSO_BATCH_MAX 128 /* most datagrams one nk__ts_send_batch call takes (NK__TS_RB) */

/* 1 if the socket takes UDP_SEGMENT (per-send cmsgs choose the size). */
int nk__ts_gso_probe(int fd);
/* One sendmmsg for n <= NK__GSO_BATCH_MAX datagrams (one iovec each); runs to one destination
 * with the same size (the last may be shorter) become one UDP GSO send when gso. A full socket
 * buffer drops the rest (UDP). */
void nk__ts_send_batch(int fd, const struct mmsghdr *msgs, unsigned n, int gso);

#endif
