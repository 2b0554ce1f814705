/*
 * natkit: TURN users in coturn's own databases (SQLite file, Redis or PostgreSQL).
 *
 * nk_turn_userdb keeps, in memory, the long-term users and TURN REST shared
 * secrets of one realm as coturn stores them:
 *
 *   SQLite, PostgreSQL  turnusers_lt (realm, name, hmackey)   hmackey = hex MD5(name:realm:password)
 *                       turn_secret  (realm, value)
 *   Redis   turn/realm/<realm>/user/<name>/key     hex hmackey (string)
 *           turn/realm/<realm>/user/<name>/password  plain password (coturn accepts it too)
 *           turn/realm/<realm>/secret              set (turnadmin -s) or string of secrets
 *           turn/realm/<realm>/secret/<n>          string (newer coturn)
 *
 * so an existing coturn database works unchanged and coturn's turnadmin manages
 * natkit's users. A thread of its own re-reads the database (SQLite: when
 * PRAGMA data_version or the file changes, looked at every 250 ms; Redis and
 * PostgreSQL: every refresh_ms (500 ms), and 250 ms after a lookup missed) and swaps the new
 * snapshot in; lookups (nk_turn_userdb_keys, the TURN core's ops.user_keys)
 * read only memory. A database that fails while running is logged and the last
 * snapshot stays in use; the thread reconnects. See docs/internals/turn-server.md.
 *
 * Use:
 *   nk_turn_userdb_options_init(&o); o.sqlite_path = "/var/lib/turn/turndb"; o.realm = "example.org";
 *   nk_turn_userdb_new(&db, &o, err, sizeof(err));
 *   ops.user_keys = nk_turn_userdb_keys; ops.user_ctx = db;     (nk_turn_server_ops)
 *   ... nk_turn_userdb_free(db) after the servers.
 */
#ifndef NATKIT_TURN_USERDB_H
#define NATKIT_TURN_USERDB_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_turn_userdb nk_turn_userdb;

typedef struct nk_turn_userdb_options {
    const char *sqlite_path; /* a coturn SQLite database file, or NULL */
    const char *redis;       /* coturn's connection string "ip=... port=... dbname=... password=...
                              * connect_timeout=...", or NULL; exactly one of sqlite_path, redis, psql */
    const char *realm;       /* the realm whose users are served (admin calls: may be NULL for "all"
                              * in nk_turn_userdb_list) */
    uint32_t refresh_ms;     /* Redis: full re-read period; default 500 (changes seen within 1 s) */
    /* One line about the database while it runs (lost, back, reloaded with errors); NULL: stderr. */
    void (*log)(void *log_ctx, const char *line);
    void *log_ctx;
    /* PostgreSQL: a libpq connection string ("host=... port=... dbname=... user=... password=...
     * connect_timeout=..." or a postgresql:// URI, as coturn's psql-userdb), or NULL. Appended. */
    const char *psql;
} nk_turn_userdb_options;

NK_API void nk_turn_userdb_options_init(nk_turn_userdb_options *o);

/*
 * Opens the database, reads it once (so a server starts with its users) and starts the refresh
 * thread. 0, or an error with a sentence in err naming the file or address and the cause
 * (unreadable, not a database, missing tables, Redis or PostgreSQL unreachable or refusing; a bad
 * connection string: NK_ERR_INVAL).
 */
NK_API int nk_turn_userdb_new(nk_turn_userdb **out, const nk_turn_userdb_options *o, char *err, size_t errlen);
/* Stops the thread and frees everything; after every server that uses it. */
NK_API void nk_turn_userdb_free(nk_turn_userdb *db);

/*
 * The shape of nk_turn_server_ops.user_keys, with ctx the nk_turn_userdb: the key of user when it is
 * a long-term user of realm, then one key per shared secret when user is an unexpired TURN REST name
 * (nk_turn_rest_key). Returns how many were written. Thread-safe, never waits on I/O (a read lock
 * that the refresh thread takes only to swap a pointer). A miss asks the thread to look sooner.
 */
NK_API size_t nk_turn_userdb_keys(void *ctx, const char *realm, const char *user, int64_t unix_s,
                                  uint8_t (*keys)[16], size_t max);

typedef struct nk_turn_userdb_stats_t {
    uint64_t users;        /* long-term users in the snapshot */
    uint64_t secrets;      /* REST secrets in the snapshot */
    uint64_t loads;        /* snapshots read (the first included) */
    uint64_t load_errors;  /* reads that failed (the last snapshot stayed) */
    uint64_t skipped;      /* rows of the last snapshot not used (a key that is not 32 hex digits) */
    uint64_t last_load_ms; /* how long the last read took */
} nk_turn_userdb_stats_t;

NK_API void nk_turn_userdb_stats(nk_turn_userdb *db, nk_turn_userdb_stats_t *st);

/*
 * Administration, like coturn's turnadmin (-a, -d, -l, -s), on the database o names (realm
 * required except for list). An SQLite file is created, with coturn's schema, when it does not
 * exist; a PostgreSQL database must have coturn's tables (/usr/share/coturn/schema.sql). Each
 * returns 0, NK_ERR_NOT_FOUND (delete of what is not there) or an error with a sentence in err. put_user stores hex MD5(user:realm:pass), never the password.
 */
NK_API int nk_turn_userdb_put_user(const nk_turn_userdb_options *o, const char *user, const char *pass, char *err,
                                   size_t errlen);
NK_API int nk_turn_userdb_delete_user(const nk_turn_userdb_options *o, const char *user, char *err, size_t errlen);
/* Calls fn once per user (realm, name), sorted; o->realm NULL: every realm. */
NK_API int nk_turn_userdb_list(const nk_turn_userdb_options *o,
                               void (*fn)(void *ctx, const char *realm, const char *user), void *ctx, char *err,
                               size_t errlen);
NK_API int nk_turn_userdb_add_secret(const nk_turn_userdb_options *o, const char *secret, char *err,
                                     size_t errlen);
/* secret NULL: every secret of the realm. */
NK_API int nk_turn_userdb_delete_secret(const nk_turn_userdb_options *o, const char *secret, char *err,
                                        size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
