/*
 * natkit io: coturn's Redis user database (turnadmin -N "ip=... port=...").
 *
 * Keys (coturn's schema.userdb.redis):
 *   turn/realm/<realm>/user/<name>/key       hex MD5(name:realm:password)
 *   turn/realm/<realm>/user/<name>/password  plain password (coturn accepts it; the key is derived)
 *   turn/realm/<realm>/secret                set of REST secrets (turnadmin -s), or one string
 *   turn/realm/<realm>/secret/<n>            one secret each (newer coturn)
 * A load walks the realm's keys with SCAN (never KEYS: Redis stays responsive) and reads the
 * values with pipelined GETs. The connection is synchronous (hiredis) with a command timeout, and
 * is used only by the refresh thread and the admin calls.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <sodium.h>

#include "natkit/common.h"
#include "natkit/stun.h"
#include "turn_userdb_internal.h"

#define DEFAULT_TIMEOUT_S 5
#define SCAN_COUNT "10000"
#define GET_BATCH 1000

struct nk__udb_redis {
    nk__redis_conninfo ci;
    redisContext *c;
    char where[300]; /* "Redis at HOST:PORT db N" */
};


/* ---- the connection string ---- */

static int copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

static int number(const char *v, size_t n, unsigned long max, unsigned long *out)
{
    unsigned long x = 0;
    if (n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (unsigned long)(v[i] - '0');
    }
    if (x > max)
        return -1;
    *out = x;
    return 0;
}

static int is_key(const char *k, size_t n, const char *const *names)
{
    for (; *names != NULL; names++)
        if (strlen(*names) == n && memcmp(*names, k, n) == 0)
            return 1;
    return 0;
}

/* One "key=value" word; 0 or -1. */
static int conninfo_word(nk__redis_conninfo *ci, const char *w, size_t n)
{
    static const char *const host[] = {"ip", "host", "addr", "ipaddr", "hostaddr", NULL};
    static const char *const db[] = {"dbname", "db", "database", NULL};
    static const char *const pass[] = {"password", "pwd", "passwd", "secret", NULL};
    static const char *const port[] = {"port", "p", NULL};
    static const char *const timeout[] = {"connect_timeout", "timeout", NULL};
    static const char *const ignored[] = {"user", "uname", "name", "username", NULL};
    const char *eq = memchr(w, '=', n);
    unsigned long x;
    if (eq == NULL || eq == w)
        return -1;
    size_t kn = (size_t)(eq - w), vn = n - kn - 1;
    const char *v = eq + 1;
    if (is_key(w, kn, host))
        return vn == 0 ? -1 : copy_value(ci->host, sizeof(ci->host), v, vn);
    if (is_key(w, kn, pass))
        return copy_value(ci->password, sizeof(ci->password), v, vn);
    if (is_key(w, kn, ignored))
        return 0;
    if (is_key(w, kn, db)) {
        if (number(v, vn, 1000000, &x) != 0)
            return -1;
        ci->dbname = (unsigned)x;
        return 0;
    }
    if (is_key(w, kn, port)) {
        if (number(v, vn, 65535, &x) != 0 || x == 0)
            return -1;
        ci->port = (uint16_t)x;
        return 0;
    }
    if (is_key(w, kn, timeout)) {
        if (number(v, vn, 3600, &x) != 0)
            return -1;
        ci->connect_timeout_s = (unsigned)x;
        return 0;
    }
    return -1;
}

int nk__redis_conninfo_parse(nk__redis_conninfo *ci, const char *text, char bad[64])
{
    memset(ci, 0, sizeof(*ci));
    strcpy(ci->host, "127.0.0.1");
    ci->port = 6379;
    bad[0] = '\0';
    if (text == NULL)
        return NK_ERR_MALFORMED;
    const char *p = text;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        size_t n = strcspn(p, " \t");
        if (conninfo_word(ci, p, n) != 0) {
            size_t k = n < 63 ? n : 63;
            memcpy(bad, p, k);
            bad[k] = '\0';
            return NK_ERR_MALFORMED;
        }
        p += n;
    }
    return 0;
}

/* ---- connecting ---- */

static void drop(nk__udb_redis *b)
{
    if (b->c != NULL)
        redisFree(b->c);
    b->c = NULL;
}

/* Runs a command that must not fail; 0 or -1 with err set. */
static int simple(nk__udb_redis *b, char *err, size_t errlen, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(b->c, fmt, ap);
    va_end(ap);
    if (r == NULL) {
        nk__udb_seterr(err, errlen, "%s: %s failed: %s", b->where, what, b->c->errstr[0] ? b->c->errstr : "connection lost");
        drop(b);
        return -1;
    }
    int rc = r->type == REDIS_REPLY_ERROR ? -1 : 0;
    if (rc != 0)
        nk__udb_seterr(err, errlen, "%s: %s refused: %s", b->where, what, r->str);
    freeReplyObject(r);
    return rc;
}

static int connect_redis(nk__udb_redis *b, char *err, size_t errlen)
{
    unsigned t = b->ci.connect_timeout_s != 0 ? b->ci.connect_timeout_s : DEFAULT_TIMEOUT_S;
    struct timeval tv = {.tv_sec = (time_t)t, .tv_usec = 0};
    struct timeval cmd = {.tv_sec = DEFAULT_TIMEOUT_S, .tv_usec = 0};
    drop(b);
    b->c = redisConnectWithTimeout(b->ci.host, b->ci.port, tv);
    if (b->c == NULL) {
        nk__udb_seterr(err, errlen, "cannot reach %s: out of memory", b->where);
        return NK_ERR_NOMEM;
    }
    if (b->c->err) {
        nk__udb_seterr(err, errlen, "cannot reach %s: %s", b->where, b->c->errstr);
        drop(b);
        return NK_ERR_SYSTEM;
    }
    redisSetTimeout(b->c, cmd);
    if (b->ci.password[0] != '\0' && simple(b, err, errlen, "AUTH", "AUTH %s", b->ci.password) != 0) {
        drop(b);
        return NK_ERR_AUTH;
    }
    if (simple(b, err, errlen, "SELECT", "SELECT %u", b->ci.dbname) != 0) {
        drop(b);
        return NK_ERR_SYSTEM;
    }
    return 0;
}

static int open_redis(nk__udb_redis **out, const char *conninfo, int connect, char *err, size_t errlen)
{
    char bad[64];
    nk__udb_redis *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NK_ERR_NOMEM;
    if (nk__redis_conninfo_parse(&b->ci, conninfo, bad) != 0) {
        nk__udb_seterr(err, errlen, "bad Redis connection string: '%s' is not one of ip=, port=, dbname=, password=, "
               "connect_timeout=", bad);
        free(b);
        return NK_ERR_INVAL;
    }
    snprintf(b->where, sizeof(b->where), "Redis userdb at %s:%u db %u", b->ci.host, b->ci.port, b->ci.dbname);
    int rc = connect ? connect_redis(b, err, errlen) : 0;
    if (rc != 0) {
        nk__udb_redis_close(b);
        return rc;
    }
    *out = b;
    return 0;
}

int nk__udb_redis_open(nk__udb_redis **out, const char *conninfo, char *err, size_t errlen)
{
    return open_redis(out, conninfo, 1, err, errlen);
}

void nk__udb_redis_close(nk__udb_redis *b)
{
    if (b == NULL)
        return;
    drop(b);
    sodium_memzero(b->ci.password, sizeof(b->ci.password));
    free(b);
}

/* ---- reading ---- */

/* A glob-safe copy of s for SCAN MATCH: * ? [ ] \ escaped. */
static void glob_escape(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s != '\0' && n + 2 < cap; s++) {
        if (strchr("*?[]\\", *s) != NULL)
            dst[n++] = '\\';
        dst[n++] = *s;
    }
    dst[n] = '\0';
}

typedef struct keylist {
    char **v;
    size_t n, cap;
} keylist;

static void keylist_free(keylist *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i]);
    free(k->v);
    memset(k, 0, sizeof(*k));
}

static int keylist_add(keylist *k, const char *s, size_t len)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 256;
        char **v = realloc(k->v, cap * sizeof(*v));
        if (v == NULL)
            return NK_ERR_NOMEM;
        k->v = v;
        k->cap = cap;
    }
    if ((k->v[k->n] = strndup(s, len)) == NULL)
        return NK_ERR_NOMEM;
    k->n++;
    return 0;
}

static int lost(nk__udb_redis *b, char *err, size_t errlen, const char *what)
{
    nk__udb_seterr(err, errlen, "%s: %s: %s", b->where, what, b->c != NULL && b->c->errstr[0] ? b->c->errstr : "failed");
    drop(b);
    return NK_ERR_SYSTEM;
}

/* Every key matching pattern, by SCAN. */
static int scan(nk__udb_redis *b, const char *pattern, keylist *out, char *err, size_t errlen)
{
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(b->c, "SCAN %s MATCH %s COUNT " SCAN_COUNT, cursor, pattern);
        if (r == NULL)
            return lost(b, err, errlen, "SCAN");
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY || r->element[0]->len >= sizeof(cursor)) {
            nk__udb_seterr(err, errlen, "%s: SCAN answered %s", b->where, r->type == REDIS_REPLY_ERROR ? r->str : "oddly");
            freeReplyObject(r);
            return NK_ERR_MALFORMED;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        int rc = 0;
        for (size_t i = 0; i < r->element[1]->elements && rc == 0; i++) {
            const redisReply *e = r->element[1]->element[i];
            if (e->type == REDIS_REPLY_STRING)
                rc = keylist_add(out, e->str, e->len);
        }
        freeReplyObject(r);
        if (rc != 0)
            return rc;
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

typedef int (*value_fn)(nk__udb_snap *s, const char *key, const char *value, const char *realm);

/* The value of every key: MGET of GET_BATCH keys at a time, all batches pipelined; fn(key, value)
 * for each string value. */
static int get_all(nk__udb_redis *b, const keylist *k, value_fn fn, const char *realm, nk__udb_snap *out,
                   char *err, size_t errlen)
{
    const char *argv[GET_BATCH + 1];
    size_t batches = 0;
    argv[0] = "MGET";
    for (size_t at = 0; at < k->n; at += GET_BATCH, batches++) {
        size_t n = k->n - at < GET_BATCH ? k->n - at : GET_BATCH;
        for (size_t i = 0; i < n; i++)
            argv[i + 1] = k->v[at + i];
        if (redisAppendCommandArgv(b->c, (int)n + 1, argv, NULL) != REDIS_OK)
            return lost(b, err, errlen, "MGET");
    }
    int rc = 0;
    for (size_t j = 0; j < batches; j++) {
        void *reply = NULL;
        if (redisGetReply(b->c, &reply) != REDIS_OK || reply == NULL)
            return lost(b, err, errlen, "MGET");
        redisReply *r = reply;
        size_t at = j * GET_BATCH;
        for (size_t i = 0; rc == 0 && r->type == REDIS_REPLY_ARRAY && i < r->elements && at + i < k->n; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING)
                rc = fn(out, k->v[at + i], r->element[i]->str, realm);
        if (rc == 0 && r->type == REDIS_REPLY_ERROR)
            nk__udb_seterr(err, errlen, "%s: MGET refused: %s", b->where, r->str), rc = NK_ERR_SYSTEM;
        freeReplyObject(r);
    }
    return rc;
}

const char *nk__udb_redis_key_user(const char *key, const char *realm, const char *suffix, char *buf, size_t cap)
{
    size_t rl = strlen(realm), pre = strlen("turn/realm/") + rl + strlen("/user/"), suf = strlen(suffix),
           n = strlen(key);
    if (n <= pre + suf || n - pre - suf >= cap || strncmp(key, "turn/realm/", 11) != 0 ||
        strncmp(key + 11, realm, rl) != 0 || strncmp(key + 11 + rl, "/user/", 6) != 0 ||
        strcmp(key + n - suf, suffix) != 0)
        return NULL;
    memcpy(buf, key + pre, n - pre - suf);
    buf[n - pre - suf] = '\0';
    return buf;
}

static int user_key(nk__udb_snap *s, const char *key, const char *value, const char *realm)
{
    char name[600];
    const char *u = nk__udb_redis_key_user(key, realm, "/key", name, sizeof(name));
    if (u == NULL) {
        s->skipped++;
        return 0;
    }
    return nk__udb_snap_add_hex(s, u, value);
}

static int user_password(nk__udb_snap *s, const char *key, const char *value, const char *realm)
{
    char name[600];
    uint8_t k[32];
    size_t len;
    const char *u = nk__udb_redis_key_user(key, realm, "/password", name, sizeof(name));
    if (u == NULL || nk__udb_snap_find(s, u) != NULL) /* a /key wins, as in coturn */
        return 0;
    if (nk_stun_long_term_key(NK_STUN_PWALG_MD5, u, realm, value, k, &len) != 0) {
        s->skipped++;
        return 0;
    }
    int rc = nk__udb_snap_add_user(s, u, k);
    sodium_memzero(k, sizeof(k));
    return rc == NK_ERR_INVAL ? (s->skipped++, 0) : rc;
}

static int secret_value(nk__udb_snap *s, const char *key, const char *value, const char *realm)
{
    return nk__udb_snap_add_secret(s, value);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* One SCAN over the realm's keys (each SCAN pass costs Redis the whole keyspace, so one, not
 * three), sorted into user keys, user passwords and secret strings. */
static int scan_realm(nk__udb_redis *b, const char *realm, keylist *keys, keylist *pws, keylist *secrets, char *err,
                      size_t errlen)
{
    char esc[300], pattern[400], user_pre[300], secret_pre[300];
    keylist all = {0};
    glob_escape(esc, sizeof(esc), realm);
    snprintf(pattern, sizeof(pattern), "turn/realm/%s/*", esc);
    snprintf(user_pre, sizeof(user_pre), "turn/realm/%s/user/", realm);
    snprintf(secret_pre, sizeof(secret_pre), "turn/realm/%s/secret/", realm);
    int rc = scan(b, pattern, &all, err, errlen);
    for (size_t i = 0; i < all.n && rc == 0; i++) {
        const char *k = all.v[i];
        keylist *to = NULL;
        if (strncmp(k, user_pre, strlen(user_pre)) == 0)
            to = ends_with(k, "/key") ? keys : ends_with(k, "/password") ? pws : NULL;
        else if (strncmp(k, secret_pre, strlen(secret_pre)) == 0)
            to = secrets;
        if (to != NULL)
            rc = keylist_add(to, k, strlen(k));
    }
    keylist_free(&all);
    return rc;
}

/* turn/realm/R/secret: a set (turnadmin -s) or a string. */
static int load_secret_set(nk__udb_redis *b, const char *realm, nk__udb_snap *out, char *err, size_t errlen)
{
    int rc = 0;
    redisReply *r = redisCommand(b->c, "TYPE turn/realm/%s/secret", realm);
    if (r == NULL)
        return lost(b, err, errlen, "TYPE");
    int is_set = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "set") == 0;
    int is_string = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "string") == 0;
    freeReplyObject(r);
    r = NULL;
    if (is_set && (r = redisCommand(b->c, "SMEMBERS turn/realm/%s/secret", realm)) == NULL)
        return lost(b, err, errlen, "SMEMBERS");
    if (is_string && (r = redisCommand(b->c, "GET turn/realm/%s/secret", realm)) == NULL)
        return lost(b, err, errlen, "GET");
    if (r != NULL && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements && rc == 0; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING)
                rc = nk__udb_snap_add_secret(out, r->element[i]->str);
    } else if (r != NULL && r->type == REDIS_REPLY_STRING)
        rc = nk__udb_snap_add_secret(out, r->str);
    if (r != NULL)
        freeReplyObject(r);
    if (rc != 0)
        return rc;
    return 0;
}

int nk__udb_redis_load(nk__udb_redis *b, const char *realm, nk__udb_snap *out, char *err, size_t errlen)
{
    keylist keys = {0}, pws = {0}, secrets = {0};
    int rc = b->c == NULL ? connect_redis(b, err, errlen) : 0;
    if (rc == 0)
        rc = scan_realm(b, realm, &keys, &pws, &secrets, err, errlen);
    if (rc == 0)
        rc = get_all(b, &keys, user_key, realm, out, err, errlen);
    if (rc == 0) /* after the keys: a /key wins over a /password */
        rc = get_all(b, &pws, user_password, realm, out, err, errlen);
    if (rc == 0)
        rc = get_all(b, &secrets, secret_value, realm, out, err, errlen);
    if (rc == 0)
        rc = load_secret_set(b, realm, out, err, errlen);
    keylist_free(&keys);
    keylist_free(&pws);
    keylist_free(&secrets);
    return rc;
}

int nk__udb_redis_get_user(nk__udb_redis *b, const char *realm, const char *name, nk__udb_snap *into, char *err,
                           size_t errlen)
{
    keylist k = {0}, p = {0};
    char key[1200];
    int rc = b->c == NULL ? connect_redis(b, err, errlen) : 0;
    snprintf(key, sizeof(key), "turn/realm/%s/user/%s/key", realm, name);
    if (rc == 0)
        rc = keylist_add(&k, key, strlen(key));
    snprintf(key, sizeof(key), "turn/realm/%s/user/%s/password", realm, name);
    if (rc == 0)
        rc = keylist_add(&p, key, strlen(key));
    if (rc == 0)
        rc = get_all(b, &k, user_key, realm, into, err, errlen);
    if (rc == 0)
        rc = get_all(b, &p, user_password, realm, into, err, errlen);
    keylist_free(&k);
    keylist_free(&p);
    return rc;
}

/* ---- administration ---- */

static void list_fn(nk__udb_redis *b, const keylist *k, void (*fn)(void *, const char *, const char *), void *ctx)
{
    for (size_t i = 0; i < k->n; i++) {
        /* turn/realm/<realm>/user/<name>/key */
        const char *key = k->v[i], *r = key + strlen("turn/realm/");
        const char *u = strstr(r, "/user/");
        size_t n = strlen(key);
        if (u == NULL || n < 4 || strcmp(key + n - 4, "/key") != 0 || key + n - 4 <= u + 6)
            continue;
        char realm[300], name[600];
        if (copy_value(realm, sizeof(realm), r, (size_t)(u - r)) == 0 &&
            copy_value(name, sizeof(name), u + 6, (size_t)(key + n - 4 - (u + 6))) == 0 && fn != NULL)
            fn(ctx, realm, name);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int admin_op(nk__udb_redis *b, const nk_turn_userdb_options *o, int op, const char *name, const char *value,
                    void (*fn)(void *, const char *, const char *), void *ctx, char *err, size_t errlen)
{
    const char *realm = o->realm;
    redisReply *r;
    switch (op) {
    case NK__UDB_PUT_USER:
        return simple(b, err, errlen, "SET", "SET turn/realm/%s/user/%s/key %s", realm, name, value) == 0
                   ? 0
                   : NK_ERR_SYSTEM;
    case NK__UDB_ADD_SECRET:
        return simple(b, err, errlen, "SADD", "SADD turn/realm/%s/secret %s", realm, value) == 0 ? 0
                                                                                                  : NK_ERR_SYSTEM;
    case NK__UDB_DEL_USER:
        r = redisCommand(b->c, "DEL turn/realm/%s/user/%s/key turn/realm/%s/user/%s/password", realm, name, realm,
                         name);
        break;
    case NK__UDB_DEL_SECRET:
        r = value != NULL ? redisCommand(b->c, "SREM turn/realm/%s/secret %s", realm, value)
                          : redisCommand(b->c, "DEL turn/realm/%s/secret", realm);
        break;
    default: { /* NK__UDB_LIST */
        char esc[300], pattern[400];
        keylist k = {0};
        glob_escape(esc, sizeof(esc), realm != NULL ? realm : "");
        snprintf(pattern, sizeof(pattern), "turn/realm/%s/user/*/key", realm != NULL ? esc : "*");
        int rc = scan(b, pattern, &k, err, errlen);
        if (rc == 0) {
            qsort(k.v, k.n, sizeof(*k.v), cmp_str);
            list_fn(b, &k, fn, ctx);
        }
        keylist_free(&k);
        return rc;
    }
    }
    if (r == NULL)
        return lost(b, err, errlen, "DEL");
    int rc = r->type == REDIS_REPLY_INTEGER ? (r->integer > 0 ? 0 : NK_ERR_NOT_FOUND) : NK_ERR_SYSTEM;
    if (r->type == REDIS_REPLY_ERROR)
        nk__udb_seterr(err, errlen, "%s: %s", b->where, r->str);
    else if (rc == NK_ERR_NOT_FOUND)
        nk__udb_seterr(err, errlen, "%s '%s' is not in realm %s of the %s", op == NK__UDB_DEL_USER ? "user" : "secret",
               op == NK__UDB_DEL_USER ? name : (value != NULL ? "..." : "(any)"), realm, b->where);
    freeReplyObject(r);
    return rc;
}

int nk__udb_redis_admin(const nk_turn_userdb_options *o, int op, const char *name, const char *value,
                        void (*fn)(void *, const char *, const char *), void *ctx, char *err, size_t errlen)
{
    nk__udb_redis *b = NULL;
    int rc = open_redis(&b, o->redis, 1, err, errlen);
    if (rc != 0)
        return rc;
    rc = admin_op(b, o, op, name, value, fn, ctx, err, errlen);
    nk__udb_redis_close(b);
    return rc;
}
