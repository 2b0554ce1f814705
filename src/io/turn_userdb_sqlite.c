/*
 * natkit io: coturn's SQLite user database (turnadmin -b FILE).
 *
 * Read side: the file is opened read-only; a load reads the realm's
 * turnusers_lt and turn_secret rows in one read transaction. Whether to load
 * again is decided by PRAGMA data_version (changes committed by any other
 * connection, turnadmin's included) and stat() (the file replaced).
 * Write side (natkit turn-user): the file is created with coturn's schema when
 * new, so coturn's turnadmin and turnserver accept it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "natkit/common.h"
#include "turn_userdb_internal.h"

struct nk__udb_sqlite {
    sqlite3 *db;
    char *path;
    int64_t data_version;
    struct stat st;
};

/* coturn's schema (what turnadmin -b creates), so that coturn accepts a file natkit made. */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS turnusers_lt ( realm varchar(127) default '', name varchar(512), hmackey "
    "char(128), PRIMARY KEY (realm,name));"
    "CREATE TABLE IF NOT EXISTS turn_secret (realm varchar(127) default '', value varchar(127), primary key "
    "(realm,value));"
    "CREATE TABLE IF NOT EXISTS allowed_peer_ip (realm varchar(127) default '', ip_range varchar(256), primary "
    "key (realm,ip_range));"
    "CREATE TABLE IF NOT EXISTS denied_peer_ip (realm varchar(127) default '', ip_range varchar(256), primary "
    "key (realm,ip_range));"
    "CREATE TABLE IF NOT EXISTS turn_origin_to_realm (origin varchar(127),realm varchar(127),primary key "
    "(origin));"
    "CREATE TABLE IF NOT EXISTS turn_realm_option (realm varchar(127) default '', opt varchar(32), value "
    "varchar(128), primary key (realm,opt));"
    "CREATE TABLE IF NOT EXISTS oauth_key (kid varchar(128),ikm_key varchar(256),timestamp bigint default "
    "0,lifetime integer default 0,as_rs_alg varchar(64) default '',realm varchar(127) default '',primary key "
    "(kid));"
    "CREATE TABLE IF NOT EXISTS admin_user (name varchar(32), realm varchar(127), password varchar(127), "
    "primary key (name));";


static int64_t data_version(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return found;
}

/* Opens path; readonly: the server's side (the file must exist). 0 or an error with err set. */
static int open_db(sqlite3 **out, const char *path, int readonly, char *err, size_t errlen)
{
    struct stat st;
    *out = NULL;
    if (readonly && stat(path, &st) != 0) {
        nk__udb_seterr(err, errlen, "cannot open userdb %s: %s", path, strerror(errno));
        return NK_ERR_SYSTEM;
    }
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, out, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        nk__udb_seterr(err, errlen, "cannot open userdb %s: %s", path,
               *out != NULL ? sqlite3_errmsg(*out) : sqlite3_errstr(rc));
        sqlite3_close(*out);
        *out = NULL;
        return NK_ERR_SYSTEM;
    }
    sqlite3_busy_timeout(*out, 2000);
    /* a corrupt or foreign file shows itself on the first read */
    if (sqlite3_exec(*out, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
        nk__udb_seterr(err, errlen, "cannot read userdb %s: %s", path, sqlite3_errmsg(*out));
        sqlite3_close(*out);
        *out = NULL;
        return NK_ERR_MALFORMED;
    }
    return 0;
}

static int check_tables(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    static const char *const need[] = {"turnusers_lt", "turn_secret"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (!has_table(db, need[i])) {
            nk__udb_seterr(err, errlen, "userdb %s has no table %s: not a coturn user database (make one with "
                   "'natkit turn-user add' or coturn's 'turnadmin -a -b FILE')", path, need[i]);
            return NK_ERR_MALFORMED;
        }
    }
    return 0;
}

int nk__udb_sqlite_open(nk__udb_sqlite **out, const char *path, char *err, size_t errlen)
{
    nk__udb_sqlite *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->path = strdup(path)) == NULL) {
        free(b);
        return NK_ERR_NOMEM;
    }
    int rc = open_db(&b->db, path, 1, err, errlen);
    if (rc == 0)
        rc = check_tables(b->db, path, err, errlen);
    if (rc != 0) {
        nk__udb_sqlite_close(b);
        return rc;
    }
    stat(path, &b->st);
    b->data_version = data_version(b->db);
    *out = b;
    return 0;
}

int nk__udb_sqlite_changed(nk__udb_sqlite *b)
{
    struct stat st;
    if (stat(b->path, &st) != 0)
        return 0; /* gone: keep what we have (a later file is seen by its inode) */
    if (st.st_ino != b->st.st_ino || st.st_dev != b->st.st_dev) {
        /* replaced (e.g. moved into place): reopen */
        sqlite3 *db = NULL;
        if (open_db(&db, b->path, 1, NULL, 0) != 0)
            return 0;
        sqlite3_close(b->db);
        b->db = db;
        b->st = st;
        b->data_version = data_version(db);
        return 1;
    }
    int64_t v = data_version(b->db);
    if (v != b->data_version) {
        b->data_version = v;
        return 1;
    }
    return 0;
}

static int load_rows(sqlite3 *db, const char *sql, const char *realm, nk__udb_snap *out, int users)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL), err = 0;
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(st, 1, realm, -1, SQLITE_STATIC);
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *a = (const char *)sqlite3_column_text(st, 0);
        if (users)
            err = nk__udb_snap_add_hex(out, a, (const char *)sqlite3_column_text(st, 1));
        else
            err = nk__udb_snap_add_secret(out, a);
    }
    sqlite3_finalize(st);
    if (err != 0)
        return SQLITE_NOMEM;
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int nk__udb_sqlite_load(nk__udb_sqlite *b, const char *realm, nk__udb_snap *out, char *err, size_t errlen)
{
    int rc = sqlite3_exec(b->db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = load_rows(b->db, "SELECT name, hmackey FROM turnusers_lt WHERE realm = ?1", realm, out, 1);
    if (rc == SQLITE_OK)
        rc = load_rows(b->db, "SELECT value FROM turn_secret WHERE realm = ?1", realm, out, 0);
    const char *msg = rc != SQLITE_OK ? sqlite3_errmsg(b->db) : NULL;
    if (msg != NULL)
        nk__udb_seterr(err, errlen, "cannot read userdb %s: %s", b->path, msg);
    sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL);
    b->data_version = data_version(b->db);
    if (rc == SQLITE_NOMEM)
        return NK_ERR_NOMEM;
    return rc == SQLITE_OK ? 0 : NK_ERR_SYSTEM;
}

void nk__udb_sqlite_close(nk__udb_sqlite *b)
{
    if (b == NULL)
        return;
    sqlite3_close(b->db);
    free(b->path);
    free(b);
}

/* ---- administration ---- */

static int run_stmt(sqlite3 *db, const char *sql, const char *a, const char *b, const char *c, int *changes)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    const char *args[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (args[i] != NULL)
            sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (changes != NULL)
        *changes = sqlite3_changes(db);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int list(sqlite3 *db, const char *realm, void (*fn)(void *, const char *, const char *), void *ctx)
{
    sqlite3_stmt *st = NULL;
    const char *sql = realm != NULL ? "SELECT realm, name FROM turnusers_lt WHERE realm = ?1 ORDER BY realm, name"
                                    : "SELECT realm, name FROM turnusers_lt ORDER BY realm, name";
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    if (realm != NULL)
        sqlite3_bind_text(st, 1, realm, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn != NULL)
            fn(ctx, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int nk__udb_sqlite_admin(const nk_turn_userdb_options *o, int op, const char *name, const char *value,
                         void (*fn)(void *, const char *, const char *), void *ctx, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    const char *path = o->sqlite_path;
    int changes = -1, rc;
    int readonly = op == NK__UDB_LIST;
    int e = open_db(&db, path, readonly, err, errlen);
    if (e != 0)
        return e;
    if (readonly) {
        e = check_tables(db, path, err, errlen);
        rc = e == 0 ? list(db, o->realm, fn, ctx) : SQLITE_OK;
    } else {
        rc = sqlite3_exec(db, schema, NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            switch (op) {
            case NK__UDB_PUT_USER:
                rc = run_stmt(db, "INSERT OR REPLACE INTO turnusers_lt (realm, name, hmackey) VALUES (?1, ?2, ?3)",
                              o->realm, name, value, NULL);
                break;
            case NK__UDB_DEL_USER:
                rc = run_stmt(db, "DELETE FROM turnusers_lt WHERE realm = ?1 AND name = ?2", o->realm, name, NULL,
                              &changes);
                break;
            case NK__UDB_ADD_SECRET:
                rc = run_stmt(db, "INSERT OR IGNORE INTO turn_secret (realm, value) VALUES (?1, ?2)", o->realm,
                              value, NULL, NULL);
                break;
            default: /* NK__UDB_DEL_SECRET */
                rc = value != NULL ? run_stmt(db, "DELETE FROM turn_secret WHERE realm = ?1 AND value = ?2",
                                              o->realm, value, NULL, &changes)
                                   : run_stmt(db, "DELETE FROM turn_secret WHERE realm = ?1", o->realm, NULL, NULL,
                                              &changes);
                break;
            }
        }
    }
    if (e == 0 && rc != SQLITE_OK) {
        nk__udb_seterr(err, errlen, "cannot %s userdb %s: %s", readonly ? "read" : "write", path, sqlite3_errmsg(db));
        e = NK_ERR_SYSTEM;
    }
    sqlite3_close(db);
    if (e == 0 && changes == 0) {
        nk__udb_seterr(err, errlen, "%s '%s' is not in realm %s of userdb %s", op == NK__UDB_DEL_USER ? "user" : "secret",
               op == NK__UDB_DEL_USER ? name : (value != NULL ? "..." : "(any)"), o->realm, path);
        return NK_ERR_NOT_FOUND;
    }
    return e;
}
