/*
 * natkit io: TURN users from coturn's databases, kept in memory.
 *
 * The packet loops read a snapshot (users hashed by name, the secrets) under
 * a read lock; one thread of our own re-reads the database and swaps a new
 * snapshot in under the write lock, held only for the pointer swap. So a
 * lookup never waits on the database, and a user added or deleted is seen
 * once the thread has looked: SQLite every 250 ms (a cheap PRAGMA
 * data_version and stat(); the whole realm is re-read only when they
 * changed), Redis and PostgreSQL every refresh_ms (500 ms) and 250 ms after a
 * miss at the earliest. A failed read keeps the last snapshot, logs once per outage, and
 * is retried on the next tick.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "clock.h"
#include "natkit/stun.h"
#include "natkit/turn_server.h"
#include "turn_userdb_internal.h"

#define TICK_MS 250
#define MAX_NAME 512
#define MAX_MISSED 8

/* ---- hex keys ---- */

int nk__udb_hex_key(const char *hex, uint8_t key[16])
{
    size_t n = 0;
    if (hex == NULL || strlen(hex) != 32 || sodium_hex2bin(key, 16, hex, 32, NULL, &n, NULL) != 0 || n != 16)
        return NK_ERR_MALFORMED;
    return 0;
}

void nk__udb_key_hex(const uint8_t key[16], char hex[33])
{
    sodium_bin2hex(hex, 33, key, 16);
}

/* ---- snapshots ---- */

int nk__udb_snap_init(nk__udb_snap *s)
{
    memset(s, 0, sizeof(*s));
    s->nbuckets = 64;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    if (s->buckets == NULL)
        return NK_ERR_NOMEM;
    randombytes_buf(s->hash_key, sizeof(s->hash_key));
    return 0;
}

static size_t bucket_of(const nk__udb_snap *s, size_t nbuckets, const char *name)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;
    crypto_shorthash(h, (const unsigned char *)name, strlen(name), s->hash_key);
    memcpy(&v, h, sizeof(v));
    return (size_t)(v & (nbuckets - 1));
}

static int grow(nk__udb_snap *s)
{
    size_t n = s->nbuckets * 2;
    nk__udb_user **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return NK_ERR_NOMEM;
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (nk__udb_user *u = s->buckets[i], *next; u != NULL; u = next) {
            next = u->next;
            size_t k = bucket_of(s, n, u->name);
            u->next = b[k];
            b[k] = u;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

int nk__udb_snap_add_user(nk__udb_snap *s, const char *name, const uint8_t key[16])
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > MAX_NAME)
        return NK_ERR_INVAL;
    nk__udb_user *u = (nk__udb_user *)nk__udb_snap_find(s, name);
    if (u != NULL) {
        memcpy(u->key, key, 16);
        return 0;
    }
    if (s->nusers >= s->nbuckets && grow(s) != 0)
        return NK_ERR_NOMEM;
    u = malloc(sizeof(*u) + len + 1);
    if (u == NULL)
        return NK_ERR_NOMEM;
    memcpy(u->key, key, 16);
    memcpy(u->name, name, len + 1);
    size_t k = bucket_of(s, s->nbuckets, name);
    u->next = s->buckets[k];
    s->buckets[k] = u;
    s->nusers++;
    return 0;
}

int nk__udb_snap_add_hex(nk__udb_snap *s, const char *name, const char *hex)
{
    uint8_t key[16];
    if (nk__udb_hex_key(hex, key) != 0 || name == NULL || *name == '\0' || strlen(name) > MAX_NAME) {
        s->skipped++;
        return 0;
    }
    int err = nk__udb_snap_add_user(s, name, key);
    sodium_memzero(key, sizeof(key));
    return err;
}

int nk__udb_snap_add_secret(nk__udb_snap *s, const char *secret)
{
    if (secret == NULL || *secret == '\0') {
        s->skipped++;
        return 0;
    }
    for (size_t i = 0; i < s->nsecrets; i++)
        if (strcmp(s->secrets[i], secret) == 0)
            return 0;
    char **v = realloc(s->secrets, (s->nsecrets + 1) * sizeof(*v));
    if (v == NULL)
        return NK_ERR_NOMEM;
    s->secrets = v;
    if ((v[s->nsecrets] = strdup(secret)) == NULL)
        return NK_ERR_NOMEM;
    s->nsecrets++;
    return 0;
}

const nk__udb_user *nk__udb_snap_find(const nk__udb_snap *s, const char *name)
{
    if (s->buckets == NULL)
        return NULL;
    for (const nk__udb_user *u = s->buckets[bucket_of(s, s->nbuckets, name)]; u != NULL; u = u->next)
        if (strcmp(u->name, name) == 0)
            return u;
    return NULL;
}

void nk__udb_snap_free(nk__udb_snap *s)
{
    for (size_t i = 0; s->buckets != NULL && i < s->nbuckets; i++) {
        for (nk__udb_user *u = s->buckets[i], *next; u != NULL; u = next) {
            next = u->next;
            sodium_memzero(u->key, sizeof(u->key));
            free(u);
        }
    }
    free(s->buckets);
    for (size_t i = 0; i < s->nsecrets; i++) {
        sodium_memzero(s->secrets[i], strlen(s->secrets[i]));
        free(s->secrets[i]);
    }
    free(s->secrets);
    memset(s, 0, sizeof(*s));
}

/* ---- the object ---- */

struct nk_turn_userdb {
    char *realm;
    uint32_t refresh_ms;
    void (*log)(void *, const char *);
    void *log_ctx;
    nk__udb_sqlite *sqlite;
    nk__udb_redis *redis;
    nk__udb_psql *psql;
    char *what; /* "userdb FILE" / "Redis userdb" / "PostgreSQL userdb" for log lines */

    pthread_rwlock_t lock; /* guards snap (the pointer and what it points to) */
    nk__udb_snap *snap;

    pthread_mutex_t mu; /* guards stop, with cond */
    pthread_cond_t cond;
    int stop, started;
    pthread_t thread;
    atomic_int miss;
    int failing;
    /* Redis, PostgreSQL: names that missed, looked up one by one on the next tick (a full read of a large
     * database takes longer); the packet loops only try the lock, so they never wait */
    pthread_mutex_t missmu;
    char missed[MAX_MISSED][MAX_NAME + 1];
    int nmissed;

    _Atomic uint64_t users, secrets, loads, load_errors, skipped, last_load_ms;
};

static void logf_(nk_turn_userdb *db, const char *fmt, ...)
{
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (db->log != NULL)
        db->log(db->log_ctx, line);
    else {
        fprintf(stderr, "natkit turn-server: %s\n", line);
        fflush(stderr);
    }
}

/* How many databases o names (exactly one is valid). */
static int backends(const nk_turn_userdb_options *o)
{
    return (o->sqlite_path != NULL) + (o->redis != NULL) + (o->psql != NULL);
}

void nk_turn_userdb_options_init(nk_turn_userdb_options *o)
{
    memset(o, 0, sizeof(*o));
    o->refresh_ms = 500;
}

void nk__udb_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Reads the database into a new snapshot and swaps it in; 0 or the load's error (err set). */
static int load(nk_turn_userdb *db, char *err, size_t errlen)
{
    nk__udb_snap *s = malloc(sizeof(*s));
    int64_t t0 = nk__now_ms();
    int rc = s == NULL ? NK_ERR_NOMEM : nk__udb_snap_init(s);
    if (rc == 0)
        rc = db->sqlite != NULL ? nk__udb_sqlite_load(db->sqlite, db->realm, s, err, errlen)
             : db->redis != NULL ? nk__udb_redis_load(db->redis, db->realm, s, err, errlen)
                                 : nk__udb_psql_load(db->psql, db->realm, s, err, errlen);
    if (rc != 0) {
        if (rc == NK_ERR_NOMEM)
            nk__udb_seterr(err, errlen, "%s: out of memory", db->what);
        if (s != NULL)
            nk__udb_snap_free(s);
        free(s);
        db->load_errors++;
        return rc;
    }
    db->users = s->nusers;
    db->secrets = s->nsecrets;
    db->skipped = s->skipped;
    db->loads++;
    db->last_load_ms = (uint64_t)(nk__now_ms() - t0);
    pthread_rwlock_wrlock(&db->lock);
    nk__udb_snap *old = db->snap;
    db->snap = s;
    pthread_rwlock_unlock(&db->lock);
    if (old != NULL) {
        nk__udb_snap_free(old);
        free(old);
    }
    return 0;
}

/* Redis, PostgreSQL: refresh_ms, stretched to 4 reads' time, so that the database spends at most a fifth of its time on
 * us however large the database. */
static int64_t period(const nk_turn_userdb *db)
{
    int64_t p = (int64_t)db->last_load_ms * 4;
    return p > (int64_t)db->refresh_ms ? p : (int64_t)db->refresh_ms;
}

/* Redis, PostgreSQL: the names that missed since the last tick, read one by one and added to the snapshot. */
static void look_up_missed(nk_turn_userdb *db)
{
    char names[MAX_MISSED][MAX_NAME + 1], err[512];
    int n;
    pthread_mutex_lock(&db->missmu);
    n = db->nmissed;
    memcpy(names, db->missed, sizeof(names[0]) * (size_t)n);
    db->nmissed = 0;
    pthread_mutex_unlock(&db->missmu);
    for (int i = 0; i < n; i++) {
        nk__udb_snap one;
        if (nk__udb_snap_init(&one) != 0)
            return;
        int rc = db->redis != NULL ? nk__udb_redis_get_user(db->redis, db->realm, names[i], &one, err, sizeof(err))
                                   : nk__udb_psql_get_user(db->psql, db->realm, names[i], &one, err, sizeof(err));
        if (rc == 0) {
            const nk__udb_user *u = nk__udb_snap_find(&one, names[i]);
            if (u != NULL) {
                pthread_rwlock_wrlock(&db->lock);
                if (nk__udb_snap_add_user(db->snap, names[i], u->key) == 0 && db->snap->nusers > db->users)
                    db->users = db->snap->nusers;
                pthread_rwlock_unlock(&db->lock);
            }
        }
        nk__udb_snap_free(&one);
    }
}

/* One tick of the thread: re-read when due; log losing and regaining the database. */
static void refresh(nk_turn_userdb *db, int64_t now, int64_t *last)
{
    char err[512];
    int due;
    if (db->sqlite == NULL && !db->failing)
        look_up_missed(db);
    if (db->sqlite != NULL)
        due = db->failing || nk__udb_sqlite_changed(db->sqlite);
    else
        due = now - *last >= period(db) - TICK_MS / 2 || (atomic_load(&db->miss) && now - *last >= TICK_MS &&
                                                            (int64_t)db->last_load_ms * 4 <= TICK_MS);
    if (!due)
        return;
    atomic_store(&db->miss, 0);
    *last = now;
    err[0] = '\0';
    if (load(db, err, sizeof(err)) != 0) {
        if (!db->failing)
            logf_(db, "%s; serving the last %llu users and %llu secrets read, retrying", err,
                  (unsigned long long)db->users, (unsigned long long)db->secrets);
        db->failing = 1;
        return;
    }
    if (db->failing)
        logf_(db, "%s is back: %llu users, %llu secrets", db->what, (unsigned long long)db->users,
              (unsigned long long)db->secrets);
    else if (db->skipped != 0)
        logf_(db, "%s: %llu rows skipped (hmackey not 32 hex digits: natkit keeps MD5 keys only)", db->what,
              (unsigned long long)db->skipped);
    db->failing = 0;
}

static void *thread_main(void *arg)
{
    nk_turn_userdb *db = arg;
    int64_t last = nk__now_ms();
    pthread_mutex_lock(&db->mu);
    while (!db->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&db->cond, &db->mu, &ts);
        if (db->stop)
            break;
        pthread_mutex_unlock(&db->mu);
        refresh(db, nk__now_ms(), &last);
        pthread_mutex_lock(&db->mu);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

static int init_sync(nk_turn_userdb *db)
{
    pthread_condattr_t ca;
    if (pthread_rwlock_init(&db->lock, NULL) != 0)
        return NK_ERR_SYSTEM;
    if (pthread_mutex_init(&db->mu, NULL) != 0 || pthread_mutex_init(&db->missmu, NULL) != 0)
        return NK_ERR_SYSTEM;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&db->cond, &ca);
    pthread_condattr_destroy(&ca);
    return rc == 0 ? 0 : NK_ERR_SYSTEM;
}

int nk_turn_userdb_new(nk_turn_userdb **out, const nk_turn_userdb_options *o, char *err, size_t errlen)
{
    char what[600];
    nk__udb_seterr(err, errlen, "bad userdb options");
    if (out == NULL || o == NULL || o->realm == NULL || backends(o) != 1)
        return NK_ERR_INVAL;
    *out = NULL;
    if (sodium_init() < 0)
        return NK_ERR_SYSTEM;
    nk_turn_userdb *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return NK_ERR_NOMEM;
    if (o->sqlite_path != NULL)
        snprintf(what, sizeof(what), "userdb %s", o->sqlite_path);
    else
        snprintf(what, sizeof(what), o->redis != NULL ? "Redis userdb" : "PostgreSQL userdb");
    db->realm = strdup(o->realm);
    db->what = strdup(what);
    db->refresh_ms = o->refresh_ms != 0 ? o->refresh_ms : 500;
    db->log = o->log;
    db->log_ctx = o->log_ctx;
    int rc = db->realm == NULL || db->what == NULL ? NK_ERR_NOMEM : init_sync(db);
    if (rc == 0)
        rc = o->sqlite_path != NULL ? nk__udb_sqlite_open(&db->sqlite, o->sqlite_path, err, errlen)
             : o->redis != NULL     ? nk__udb_redis_open(&db->redis, o->redis, err, errlen)
                                    : nk__udb_psql_open(&db->psql, o->psql, err, errlen);
    if (rc == 0)
        rc = load(db, err, errlen);
    if (rc == 0) {
        rc = pthread_create(&db->thread, NULL, thread_main, db) == 0 ? 0 : NK_ERR_SYSTEM;
        db->started = rc == 0;
        if (rc != 0)
            nk__udb_seterr(err, errlen, "%s: cannot start its thread: %s", db->what, strerror(errno));
    }
    if (rc != 0) {
        nk_turn_userdb_free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void nk_turn_userdb_free(nk_turn_userdb *db)
{
    if (db == NULL)
        return;
    if (db->started) {
        pthread_mutex_lock(&db->mu);
        db->stop = 1;
        pthread_cond_signal(&db->cond);
        pthread_mutex_unlock(&db->mu);
        pthread_join(db->thread, NULL);
        pthread_cond_destroy(&db->cond);
        pthread_mutex_destroy(&db->mu);
        pthread_mutex_destroy(&db->missmu);
        pthread_rwlock_destroy(&db->lock);
    }
    if (db->snap != NULL) {
        nk__udb_snap_free(db->snap);
        free(db->snap);
    }
    nk__udb_sqlite_close(db->sqlite);
    nk__udb_redis_close(db->redis);
    nk__udb_psql_close(db->psql);
    free(db->realm);
    free(db->what);
    free(db);
}

size_t nk_turn_userdb_keys(void *ctx, const char *realm, const char *user, int64_t unix_s, uint8_t (*keys)[16],
                           size_t max)
{
    nk_turn_userdb *db = ctx;
    size_t n = 0;
    if (db == NULL || realm == NULL || user == NULL || keys == NULL || strcmp(realm, db->realm) != 0)
        return 0;
    pthread_rwlock_rdlock(&db->lock);
    const nk__udb_snap *s = db->snap;
    const nk__udb_user *u = s != NULL ? nk__udb_snap_find(s, user) : NULL;
    if (u != NULL && n < max)
        memcpy(keys[n++], u->key, 16);
    for (size_t i = 0; s != NULL && i < s->nsecrets && n < max && user[0] >= '0' && user[0] <= '9'; i++)
        if (nk_turn_rest_key(s->secrets[i], strlen(s->secrets[i]), db->realm, user, unix_s, keys[n]) == 0)
            n++;
    pthread_rwlock_unlock(&db->lock);
    if (n == 0) {
        atomic_store(&db->miss, 1);
        if (db->sqlite == NULL && strlen(user) <= MAX_NAME && pthread_mutex_trylock(&db->missmu) == 0) {
            int dup = 0;
            for (int i = 0; i < db->nmissed && !dup; i++)
                dup = strcmp(db->missed[i], user) == 0;
            if (!dup && db->nmissed < MAX_MISSED)
                strcpy(db->missed[db->nmissed++], user);
            pthread_mutex_unlock(&db->missmu);
        }
    }
    return n;
}

void nk_turn_userdb_stats(nk_turn_userdb *db, nk_turn_userdb_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    if (db == NULL)
        return;
    st->users = db->users;
    st->secrets = db->secrets;
    st->loads = db->loads;
    st->load_errors = db->load_errors;
    st->skipped = db->skipped;
    st->last_load_ms = db->last_load_ms;
}

/* ---- administration ---- */

static int admin(const nk_turn_userdb_options *o, int op, const char *name, const char *value,
                 void (*fn)(void *, const char *, const char *), void *ctx, char *err, size_t errlen)
{
    nk__udb_seterr(err, errlen, "bad arguments");
    if (o == NULL || backends(o) != 1 || (op != NK__UDB_LIST && o->realm == NULL))
        return NK_ERR_INVAL;
    if (o->realm != NULL && (*o->realm == '\0' || strlen(o->realm) > 127)) {
        nk__udb_seterr(err, errlen, "the realm must have 1 to 127 bytes");
        return NK_ERR_INVAL;
    }
    if (o->sqlite_path != NULL)
        return nk__udb_sqlite_admin(o, op, name, value, fn, ctx, err, errlen);
    if (o->redis != NULL)
        return nk__udb_redis_admin(o, op, name, value, fn, ctx, err, errlen);
    return nk__udb_psql_admin(o, op, name, value, fn, ctx, err, errlen);
}

int nk_turn_userdb_put_user(const nk_turn_userdb_options *o, const char *user, const char *pass, char *err,
                            size_t errlen)
{
    uint8_t key[32];
    size_t len;
    char hex[33];
    if (user == NULL || *user == '\0' || strlen(user) > MAX_NAME || pass == NULL || o == NULL || o->realm == NULL) {
        nk__udb_seterr(err, errlen, "a user name (1 to 512 bytes), a password and a realm are needed");
        return NK_ERR_INVAL;
    }
    if (nk_stun_long_term_key(NK_STUN_PWALG_MD5, user, o->realm, pass, key, &len) != 0) {
        nk__udb_seterr(err, errlen, "cannot derive the key of '%s' (user name, realm or password not valid UTF-8?)", user);
        return NK_ERR_INVAL;
    }
    nk__udb_key_hex(key, hex);
    sodium_memzero(key, sizeof(key));
    int rc = admin(o, NK__UDB_PUT_USER, user, hex, NULL, NULL, err, errlen);
    sodium_memzero(hex, sizeof(hex));
    return rc;
}

int nk_turn_userdb_delete_user(const nk_turn_userdb_options *o, const char *user, char *err, size_t errlen)
{
    return admin(o, NK__UDB_DEL_USER, user, NULL, NULL, NULL, err, errlen);
}

int nk_turn_userdb_list(const nk_turn_userdb_options *o, void (*fn)(void *ctx, const char *realm, const char *user),
                        void *ctx, char *err, size_t errlen)
{
    return admin(o, NK__UDB_LIST, NULL, NULL, fn, ctx, err, errlen);
}

int nk_turn_userdb_add_secret(const nk_turn_userdb_options *o, const char *secret, char *err, size_t errlen)
{
    if (secret == NULL || *secret == '\0' || strlen(secret) > 127) {
        nk__udb_seterr(err, errlen, "a secret has 1 to 127 bytes");
        return NK_ERR_INVAL;
    }
    return admin(o, NK__UDB_ADD_SECRET, NULL, secret, NULL, NULL, err, errlen);
}

int nk_turn_userdb_delete_secret(const nk_turn_userdb_options *o, const char *secret, char *err, size_t errlen)
{
    return admin(o, NK__UDB_DEL_SECRET, NULL, secret, NULL, NULL, err, errlen);
}
