/*
 * natkit QUIC core: stream bookkeeping. A stream's bytes live in chunk lists
 * (nk__qbuf): appended at the end, dropped from the front, never moved, so
 * ngtcp2 may keep pointers into sent data until the peer acknowledges it.
 */
#include <string.h>

#include "internal.h"

size_t nk__qbuf_append(nk_quic *q, nk__qbuf *b, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        nk__qchunk *c = b->tail;
        if (c == NULL || c->len == NK__QCHUNK) {
            c = nk__quic_alloc(q, sizeof(*c));
            if (c == NULL)
                break;
            c->next = NULL;
            c->len = 0;
            if (b->tail != NULL)
                b->tail->next = c;
            else
                b->head = c;
            b->tail = c;
        }
        size_t k = NK__QCHUNK - c->len;
        if (k > n - done)
            k = n - done;
        memcpy(c->data + c->len, p + done, k);
        c->len += k;
        done += k;
    }
    b->end_off += done;
    return done;
}

/* Vectors over [from, end_off), at most max of them; returns how many. */
size_t nk__qbuf_vecs(const nk__qbuf *b, uint64_t from, ngtcp2_vec *v, size_t max)
{
    size_t nv = 0;
    uint64_t off = b->head_off;
    const nk__qchunk *c = b->head;
    if (b->hint != NULL && b->hint_off <= from) {
        c = b->hint;
        off = b->hint_off;
    }
    for (; c != NULL && nv < max; c = c->next) {
        uint64_t end = off + c->len;
        if (end > from) {
            if (nv == 0) {
                nk__qbuf *m = (nk__qbuf *)b; /* the hint only */
                m->hint = (nk__qchunk *)c;
                m->hint_off = off;
            }
            size_t skip = from > off ? (size_t)(from - off) : 0;
            v[nv].base = (uint8_t *)c->data + skip;
            v[nv].len = c->len - skip;
            nv++;
        }
        off = end;
    }
    return nv;
}

size_t nk__qbuf_copy(const nk__qbuf *b, uint64_t from, uint8_t *out, size_t n)
{
    size_t done = 0;
    uint64_t off = b->head_off;
    for (const nk__qchunk *c = b->head; c != NULL && done < n; c = c->next) {
        uint64_t end = off + c->len;
        if (end > from + done) {
            size_t skip = (size_t)(from + done - off);
            size_t k = c->len - skip;
            if (k > n - done)
                k = n - done;
            memcpy(out + done, c->data + skip, k);
            done += k;
        }
        off = end;
    }
    return done;
}

/* Frees the chunks wholly below upto. */
void nk__qbuf_drop(nk_quic *q, nk__qbuf *b, uint64_t upto)
{
    while (b->head != NULL) {
        nk__qchunk *c = b->head;
        if (b->head_off + c->len > upto)
            break;
        b->head = c->next;
        if (b->head == NULL)
            b->tail = NULL;
        b->head_off += c->len;
        if (b->hint == c)
            b->hint = NULL;
        nk__quic_free(q, c);
    }
}

void nk__qbuf_clear(nk_quic *q, nk__qbuf *b)
{
    while (b->head != NULL) {
        nk__qchunk *c = b->head;
        b->head = c->next;
        b->head_off += c->len;
        nk__quic_free(q, c);
    }
    b->tail = NULL;
    b->hint = NULL;
    b->head_off = b->end_off;
}

nk__qstream *nk__qstream_find(const nk_quic *q, int64_t id)
{
    for (size_t i = 0; i < q->nstreams; i++)
        if (q->streams[i]->id == id)
            return q->streams[i];
    return NULL;
}

size_t nk_quic_stream_count(const nk_quic *q, int64_t min_id)
{
    size_t n = 0;
    for (size_t i = 0; q != NULL && i < q->nstreams; i++)
        n += q->streams[i]->id >= min_id;
    return n;
}

nk__qstream *nk__qstream_add(nk_quic *q, int64_t id)
{
    if (q->nstreams == q->cap_streams) {
        size_t cap = q->cap_streams ? q->cap_streams * 2 : 8;
        nk__qstream **n = nk__quic_alloc(q, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        if (q->nstreams > 0)
            memcpy(n, q->streams, q->nstreams * sizeof(*n));
        nk__quic_free(q, q->streams);
        q->streams = n;
        q->cap_streams = cap;
    }
    nk__qstream *s = nk__quic_alloc(q, sizeof(*s));
    if (s == NULL)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->id = id;
    q->streams[q->nstreams++] = s;
    return s;
}

static void stream_remove(nk_quic *q, nk__qstream *s)
{
    for (size_t i = 0; i < q->nstreams; i++) {
        if (q->streams[i] == s) {
            q->streams[i] = q->streams[--q->nstreams];
            break;
        }
    }
    if (q->rr >= q->nstreams)
        q->rr = 0;
    nk__qbuf_clear(q, &s->tx);
    nk__qbuf_clear(q, &s->rx);
    nk__quic_free(q, s);
}

/* A stream is forgotten once ngtcp2 closed it and the application has seen its end. */
void nk__qstream_maybe_free(nk_quic *q, nk__qstream *s)
{
    if (s->closed && (s->fin_read || s->reset_rcvd || s->local_reset))
        stream_remove(q, s);
}

void nk__qstream_free_all(nk_quic *q)
{
    while (q->nstreams > 0)
        stream_remove(q, q->streams[q->nstreams - 1]);
    nk__quic_free(q, q->streams);
    q->streams = NULL;
    q->cap_streams = 0;
}
