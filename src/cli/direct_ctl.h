/*
 * natkit CLI, `accept` / `dial`: framing of the control stream (docs/internals/tcp-upgrade.md).
 * Each side sends its control messages (nk_upgrade messages, first byte 0xA7, and the CLI's 'U')
 * on a QUIC stream of its own, each as
 *     length u16 (big-endian, 1..CTL_MAX) | message
 * A length of 0 or above CTL_MAX is malformed (the connection is closed).
 */
#ifndef CLI_DIRECT_CTL_H
#define CLI_DIRECT_CTL_H

#include <stddef.h>
#include <stdint.h>

#define CTL_MAX 255

/* Bytes written (n + 2), or NK_ERR_NOBUFS / NK_ERR_INVAL (n 0 or above CTL_MAX). */
int ctl_frame_put(uint8_t *buf, size_t cap, const uint8_t *msg, size_t n);
/* The first frame of p[0..n): bytes it takes (> 0) with *msg / *len, 0 when incomplete, or
 * NK_ERR_MALFORMED. */
int ctl_frame_next(const uint8_t *p, size_t n, const uint8_t **msg, size_t *len);

#endif
