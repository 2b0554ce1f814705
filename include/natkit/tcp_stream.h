/*
 * natkit: nk_tcp_stream, a thin driver: an nk_tcpseal on a non-blocking socket
 * (file-descriptor style: poll nk_tcp_stream_fd for nk_tcp_stream_events, then
 * nk_tcp_stream_pump; read/write like a non-blocking socket).
 */
#ifndef NATKIT_TCP_STREAM_H
#define NATKIT_TCP_STREAM_H

#include "natkit/common.h"
#include "natkit/tcpseal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_tcp_stream nk_tcp_stream;

/* Takes fd (connected TCP, made non-blocking) and t; both are freed with the stream. */
NK_API int nk_tcp_stream_new(nk_tcp_stream **out, int fd, nk_tcpseal *t);
NK_API void nk_tcp_stream_free(nk_tcp_stream *ts);
NK_API int nk_tcp_stream_fd(const nk_tcp_stream *ts);
/* POLLIN/POLLOUT bits to wait for. */
NK_API short nk_tcp_stream_events(const nk_tcp_stream *ts);
/* 1 when pump would make progress without waiting for the socket (bytes read earlier now fit in
 * the seal, after the reader made room): poll with a zero timeout. */
NK_API int nk_tcp_stream_ready(const nk_tcp_stream *ts);
/* Moves bytes between the socket and the seal, as far as both take. 0, or NK_ERR_AUTH /
 * NK_ERR_MALFORMED (refused), NK_ERR_TRUNCATED (the connection ended without an end-of-stream
 * record), NK_ERR_SYSTEM. */
NK_API int nk_tcp_stream_pump(nk_tcp_stream *ts);
NK_API int nk_tcp_stream_write(nk_tcp_stream *ts, const uint8_t *p, size_t n);
NK_API int nk_tcp_stream_read(nk_tcp_stream *ts, uint8_t *buf, size_t cap);
NK_API int nk_tcp_stream_shutdown(nk_tcp_stream *ts);
/* 1 when our direction ended and every byte of it went to the kernel. */
NK_API int nk_tcp_stream_flushed(const nk_tcp_stream *ts);
NK_API nk_tcpseal *nk_tcp_stream_seal(nk_tcp_stream *ts);

#ifdef __cplusplus
}
#endif
#endif
