/*
 * natkit: EVEN-PORT reservations (RFC 8656 7.2): after an Allocate with the
 * R bit, the next port is held for 30 s under an 8-byte token. A small fixed
 * table; shared (under the shared state's lock) when several server cores
 * serve one port range, because the token may come back to another core.
 */
#include <pthread.h>
#include <string.h>

#include <sodium.h>

#include "server_internal.h"

static void lock(nk__turn_resv_table *t)
{
    if (t->lock != NULL)
        pthread_mutex_lock(t->lock);
}

static void unlock(nk__turn_resv_table *t)
{
    if (t->lock != NULL)
        pthread_mutex_unlock(t->lock);
}

static nk__turn_resv *find_port(nk__turn_resv_table *t, uint16_t port, int64_t now)
{
    for (size_t i = 0; i < NK__TURN_RESERVATIONS; i++)
        if (t->v[i].expires > now && t->v[i].port == port)
            return &t->v[i];
    return NULL;
}

int nk__resv_taken(nk__turn_resv_table *t, uint16_t port, int64_t now)
{
    lock(t);
    int taken = find_port(t, port, now) != NULL;
    unlock(t);
    return taken;
}

int nk__resv_add(nk__turn_resv_table *t, uint16_t port, int64_t now, const uint8_t token[8])
{
    int err = NK_ERR_LIMIT;
    lock(t);
    for (size_t i = 0; i < NK__TURN_RESERVATIONS && find_port(t, port, now) == NULL; i++) {
        if (t->v[i].expires <= now) {
            memcpy(t->v[i].token, token, 8);
            t->v[i].port = port;
            t->v[i].expires = now + NK__TURN_RESERVATION_MS;
            err = 0;
            break;
        }
    }
    unlock(t);
    return err;
}

int nk__resv_redeem(nk__turn_resv_table *t, const uint8_t token[8], int64_t now, uint16_t *port)
{
    int err = NK_ERR_NOT_FOUND;
    lock(t);
    for (size_t i = 0; i < NK__TURN_RESERVATIONS; i++) {
        if (t->v[i].expires > now && sodium_memcmp(t->v[i].token, token, 8) == 0) {
            *port = t->v[i].port;
            t->v[i].expires = 0; /* good once */
            err = 0;
            break;
        }
    }
    unlock(t);
    return err;
}
