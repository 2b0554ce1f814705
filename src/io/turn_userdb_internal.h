/*
 * natkit io: shared by turn_userdb.c (snapshot, thread, lookups),
 * turn_userdb_sqlite.c, turn_userdb_redis.c and turn_userdb_psql.c (the databases).
 */
#ifndef NK_IO_TURN_USERDB_INTERNAL_H
#define NK_IO_TURN_USERDB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/turn_userdb.h"

/* ---- hmackeys: 32 hex digits <-> 16 bytes ---- */
/* 0, or NK_ERR_MALFORMED unless hex is exactly 32 hex digits (either case). */
int nk__udb_hex_key(const char *hex, uint8_t key[16]);
void nk__udb_key_hex(const uint8_t key[16], char hex[33]);

/* ---- a snapshot: users by name (chained hash, SipHash with a random key) and the secrets ---- */
typedef struct nk__udb_user {
    struct nk__udb_user *next;
    uint8_t key[16];
    char name[]; /* NUL-terminated */
} nk__udb_user;

typedef struct nk__udb_snap {
    nk__udb_user **buckets;
    size_t nbuckets, nusers;
    char **secrets;
    size_t nsecrets;
    uint64_t skipped; /* rows not used (bad key) */
    uint8_t hash_key[16];
} nk__udb_snap;

int nk__udb_snap_init(nk__udb_snap *s);
/* Adds or replaces name's key; 0 or NK_ERR_NOMEM / NK_ERR_INVAL (empty or longer than 512 bytes). */
int nk__udb_snap_add_user(nk__udb_snap *s, const char *name, const uint8_t key[16]);
/* Adds a user from its hex hmackey; a malformed key is counted in skipped and 0 returned. */
int nk__udb_snap_add_hex(nk__udb_snap *s, const char *name, const char *hex);
int nk__udb_snap_add_secret(nk__udb_snap *s, const char *secret);
const nk__udb_user *nk__udb_snap_find(const nk__udb_snap *s, const char *name);
void nk__udb_snap_free(nk__udb_snap *s);

/* ---- coturn's Redis connection string ---- */
typedef struct nk__redis_conninfo {
    char host[256];
    uint16_t port;          /* default 6379 */
    unsigned dbname;        /* default 0 */
    char password[256];     /* "" = no AUTH */
    unsigned connect_timeout_s; /* 0 = default (5 s) */
} nk__redis_conninfo;

/*
 * Parses "key=value key=value ..." (coturn's names: ip/host/addr/ipaddr/hostaddr, dbname/db/database,
 * password/pwd/passwd/secret, port/p, connect_timeout/timeout; user/uname/name/username are
 * accepted and ignored). 0, or NK_ERR_MALFORMED with the offending word (at most 63 bytes) in bad.
 */
int nk__redis_conninfo_parse(nk__redis_conninfo *ci, const char *text, char bad[64]);

/* A Redis key "turn/realm/REALM/user/NAME" SUFFIX -> NAME in buf (cap bytes with the NUL), or NULL
 * when key is not one of realm's user keys with that suffix or NAME does not fit. */
const char *nk__udb_redis_key_user(const char *key, const char *realm, const char *suffix, char *buf, size_t cap);

/* ---- the databases ---- */
/* Opened per backend; loads fill a fresh snapshot for realm. */
typedef struct nk__udb_sqlite nk__udb_sqlite;
int nk__udb_sqlite_open(nk__udb_sqlite **out, const char *path, char *err, size_t errlen);
/* 1 when the file may have changed since the last load (data_version, inode, size, mtime), else 0. */
int nk__udb_sqlite_changed(nk__udb_sqlite *b);
int nk__udb_sqlite_load(nk__udb_sqlite *b, const char *realm, nk__udb_snap *out, char *err, size_t errlen);
void nk__udb_sqlite_close(nk__udb_sqlite *b);

typedef struct nk__udb_redis nk__udb_redis;
int nk__udb_redis_open(nk__udb_redis **out, const char *conninfo, char *err, size_t errlen);
/* Reconnects first when the connection was lost. */
int nk__udb_redis_load(nk__udb_redis *b, const char *realm, nk__udb_snap *out, char *err, size_t errlen);
/* One user's key (or password) into a snapshot of its own: the lookup after a miss. */
int nk__udb_redis_get_user(nk__udb_redis *b, const char *realm, const char *name, nk__udb_snap *into, char *err,
                           size_t errlen);
void nk__udb_redis_close(nk__udb_redis *b);

typedef struct nk__udb_psql nk__udb_psql;
/* conninfo goes to libpq (PQconninfoParse, PQconnectdbParams); a bad one: NK_ERR_INVAL. Checks the tables. */
int nk__udb_psql_open(nk__udb_psql **out, const char *conninfo, char *err, size_t errlen);
/* Reconnects first when the connection was lost. */
int nk__udb_psql_load(nk__udb_psql *b, const char *realm, nk__udb_snap *out, char *err, size_t errlen);
int nk__udb_psql_get_user(nk__udb_psql *b, const char *realm, const char *name, nk__udb_snap *into, char *err,
                          size_t errlen);
void nk__udb_psql_close(nk__udb_psql *b);

/* Administration (turn_userdb.c dispatches by backend). */
int nk__udb_sqlite_admin(const nk_turn_userdb_options *o, int op, const char *name, const char *value,
                         void (*fn)(void *, const char *, const char *), void *ctx, char *err, size_t errlen);
int nk__udb_redis_admin(const nk_turn_userdb_options *o, int op, const char *name, const char *value,
                        void (*fn)(void *, const char *, const char *), void *ctx, char *err, size_t errlen);
int nk__udb_psql_admin(const nk_turn_userdb_options *o, int op, const char *name, const char *value,
                       void (*fn)(void *, const char *, const char *), void *ctx, char *err, size_t errlen);
enum { NK__UDB_PUT_USER, NK__UDB_DEL_USER, NK__UDB_LIST, NK__UDB_ADD_SECRET, NK__UDB_DEL_SECRET };

/* A message into err (err NULL or errlen 0: nothing), printf-style; shared by the backends. */
void nk__udb_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
