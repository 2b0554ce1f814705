/*
 * natkit io: coturn's PostgreSQL user database (turnadmin -e "host=... dbname=...").
 *
 * Tables (coturn's schema.sql): turnusers_lt (realm, name, hmackey char(128)) and
 * turn_secret (realm, value). The connection string goes to libpq unchanged (keyword=value or
 * postgresql:// URI, as coturn passes it); libpq parses it. Every statement with a value in it is
 * PQexecParams with the values as parameters, never SQL built from strings. A load reads the
 * realm's rows in one read-only REPEATABLE READ transaction, so users and secrets are one
 * consistent view. The connection is used only by the refresh thread and the admin calls; a
 * broken one is reopened on the next load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "natkit/common.h"
#include "turn_userdb_internal.h"

#define DEFAULT_CONNECT_TIMEOUT "5"

struct nk__udb_psql {
    PGconn *c;
    char *conninfo;
    char *password;     /* the conninfo's password (NULL: none), kept out of messages whatever its length */
    char where[400];    /* "PostgreSQL userdb host=H port=P dbname=D" */
};

/* ---- messages: libpq's text, one line, without the password ---- */

/* msg with every occurrence of secret (when not empty) replaced by "...", trailing newlines cut. */
static void clean_msg(char *dst, size_t cap, const char *msg, const char *secret)
{
    size_t n = 0, sl = secret != NULL ? strlen(secret) : 0;
    if (cap == 0)
        return;
    for (const char *p = msg != NULL ? msg : ""; *p != '\0' && n + 1 < cap;) {
        if (sl != 0 && strncmp(p, secret, sl) == 0) {
            for (const char *d = "..."; *d != '\0' && n + 1 < cap; d++)
                dst[n++] = *d;
            p += sl;
        } else {
            char ch = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
            if (ch != ' ' || (n > 0 && dst[n - 1] != ' '))
                dst[n++] = ch;
            p++;
        }
    }
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

/*
 * A PQconninfoParse error quotes a word of the string ('missing "=" after "WORD"'), which may be a
 * password: a quoted word is kept only when the string has it as a keyword ("WORD=") or it is
 * punctuation.
 */
static void clean_parse_msg(char *dst, size_t cap, const char *msg, const char *conninfo)
{
    char tmp[512];
    size_t n = 0;
    clean_msg(tmp, sizeof(tmp), msg, NULL);
    for (const char *p = tmp; *p != '\0' && n + 1 < cap;) {
        const char *q = *p == '"' ? strchr(p + 1, '"') : NULL;
        if (q == NULL) {
            dst[n++] = *p++;
            continue;
        }
        size_t wl = (size_t)(q - p - 1);
        int keyword = wl != 0 && strspn(p + 1, "=&?;:/ ") >= wl; /* punctuation: '"=" expected' */
        for (const char *s = conninfo; wl != 0 && *s != '\0'; s++)
            if (strncmp(s, p + 1, wl) == 0 && s[wl] == '=' && (s == conninfo || strchr(" \t?&", s[-1]) != NULL)) {
                keyword = 1;
                break;
            }
        const char *w = keyword ? p : "\"...\"";
        size_t len = keyword ? wl + 2 : 5;
        for (size_t i = 0; i < len && n + 1 < cap; i++)
            dst[n++] = w[i];
        p = q + 1;
    }
    dst[n] = '\0';
}

/* ---- connecting ---- */

static int open_conn(nk__udb_psql *b, char *err, size_t errlen)
{
    /* connect_timeout first: the string's own, when it has one, wins (later keywords win) */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {DEFAULT_CONNECT_TIMEOUT, "natkit", b->conninfo, NULL};
    char msg[512];
    if (b->c != NULL)
        PQfinish(b->c);
    b->c = PQconnectdbParams(keys, vals, 1);
    if (b->c == NULL) {
        nk__udb_seterr(err, errlen, "cannot reach %s: out of memory", b->where);
        return NK_ERR_NOMEM;
    }
    if (PQstatus(b->c) != CONNECTION_OK) {
        clean_msg(msg, sizeof(msg), PQerrorMessage(b->c), b->password);
        nk__udb_seterr(err, errlen, "cannot reach %s: %s", b->where, msg);
        PQfinish(b->c);
        b->c = NULL;
        return NK_ERR_SYSTEM;
    }
    /* a stuck statement (a lock held by an admin) ends instead of holding the refresh thread */
    PGresult *r = PQexec(b->c, "SET statement_timeout = '5s'");
    PQclear(r);
    return 0;
}

/* The failure of r (or of the connection) into err; frees r. */
static int failed(nk__udb_psql *b, PGresult *r, const char *what, char *err, size_t errlen)
{
    char msg[512];
    clean_msg(msg, sizeof(msg), r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(b->c), b->password);
    if (msg[0] == '\0')
        clean_msg(msg, sizeof(msg), PQerrorMessage(b->c), b->password);
    nk__udb_seterr(err, errlen, "%s: %s failed: %s", b->where, what, msg[0] != '\0' ? msg : "no answer");
    PQclear(r);
    if (PQstatus(b->c) != CONNECTION_OK) { /* reopened on the next load */
        PQfinish(b->c);
        b->c = NULL;
    }
    return NK_ERR_SYSTEM;
}

/* A statement with up to 3 text parameters; the result (PGRES_TUPLES_OK / COMMAND_OK) or NULL with err set. */
static PGresult *run(nk__udb_psql *b, const char *sql, int n, const char *a, const char *b2, const char *c,
                     const char *what, char *err, size_t errlen)
{
    const char *params[3] = {a, b2, c};
    PGresult *r = PQexecParams(b->c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        failed(b, r, what, err, errlen);
        return NULL;
    }
    return r;
}

static int exec_simple(nk__udb_psql *b, const char *sql, char *err, size_t errlen)
{
    PGresult *r = run(b, sql, 0, NULL, NULL, NULL, sql, err, errlen);
    if (r == NULL)
        return NK_ERR_SYSTEM;
    PQclear(r);
    return 0;
}

static int check_tables(nk__udb_psql *b, char *err, size_t errlen)
{
    static const char *const need[] = {"turnusers_lt", "turn_secret"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        PGresult *r = run(b, "SELECT to_regclass($1::text) IS NOT NULL", 1, need[i], NULL, NULL, "looking for tables",
                          err, errlen);
        if (r == NULL)
            return NK_ERR_SYSTEM;
        int ok = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        if (!ok) {
            nk__udb_seterr(err, errlen, "%s has no table %s: not a coturn user database (load coturn's schema: "
                           "psql -f /usr/share/coturn/schema.sql)", b->where, need[i]);
            return NK_ERR_MALFORMED;
        }
    }
    return 0;
}

/* Parses conninfo (libpq's parser) for the name of the database in messages. */
int nk__udb_psql_open(nk__udb_psql **out, const char *conninfo, char *err, size_t errlen)
{
    char *perr = NULL, msg[512];
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *dbname = NULL, *user = NULL;
    *out = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (opts == NULL) {
        clean_parse_msg(msg, sizeof(msg), perr != NULL ? perr : "out of memory", conninfo);
        nk__udb_seterr(err, errlen, "bad PostgreSQL connection string: %s", msg);
        PQfreemem(perr);
        return perr != NULL ? NK_ERR_INVAL : NK_ERR_NOMEM;
    }
    nk__udb_psql *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->conninfo = strdup(conninfo)) == NULL) {
        free(b);
        PQconninfoFree(opts);
        return NK_ERR_NOMEM;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        const char *v = o->val != NULL && o->val[0] != '\0' ? o->val : NULL;
        if (!strcmp(o->keyword, "host"))
            host = v;
        else if (!strcmp(o->keyword, "hostaddr"))
            hostaddr = v;
        else if (!strcmp(o->keyword, "port"))
            port = v;
        else if (!strcmp(o->keyword, "dbname"))
            dbname = v;
        else if (!strcmp(o->keyword, "user"))
            user = v;
        else if (!strcmp(o->keyword, "password") && v != NULL && b->password == NULL &&
                 (b->password = strdup(v)) == NULL)
            break; /* no memory: refused below, never a message with the password unmasked */
    }
    snprintf(b->where, sizeof(b->where), "PostgreSQL userdb host=%.100s port=%.20s dbname=%.100s",
             host != NULL ? host : hostaddr != NULL ? hostaddr : "(default)", port != NULL ? port : "(default)",
             dbname != NULL ? dbname : user != NULL ? user : "(default)");
    int nomem = 0;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (o->val != NULL && o->val[0] != '\0' && !strcmp(o->keyword, "password")) {
            nomem = b->password == NULL;
            sodium_memzero(o->val, strlen(o->val));
        }
    PQconninfoFree(opts);
    int rc = nomem ? NK_ERR_NOMEM : open_conn(b, err, errlen);
    if (nomem)
        nk__udb_seterr(err, errlen, "%s: out of memory", b->where);
    if (rc == 0)
        rc = check_tables(b, err, errlen);
    if (rc != 0) {
        nk__udb_psql_close(b);
        return rc;
    }
    *out = b;
    return 0;
}

void nk__udb_psql_close(nk__udb_psql *b)
{
    if (b == NULL)
        return;
    if (b->c != NULL)
        PQfinish(b->c);
    if (b->conninfo != NULL) {
        sodium_memzero(b->conninfo, strlen(b->conninfo));
        free(b->conninfo);
    }
    if (b->password != NULL) {
        sodium_memzero(b->password, strlen(b->password));
        free(b->password);
    }
    free(b);
}

/* ---- reading ---- */

/* hmackey is char(128) in coturn's schema: ::text drops the blank padding. */
#define SELECT_USERS "SELECT name, hmackey::text FROM turnusers_lt WHERE realm = $1::text"

static int add_users(nk__udb_snap *out, PGresult *r)
{
    int rc = 0;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++)
        rc = PQgetisnull(r, i, 0) || PQgetisnull(r, i, 1)
                 ? (out->skipped++, 0)
                 : nk__udb_snap_add_hex(out, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    return rc;
}

int nk__udb_psql_load(nk__udb_psql *b, const char *realm, nk__udb_snap *out, char *err, size_t errlen)
{
    int rc = b->c == NULL ? open_conn(b, err, errlen) : 0;
    PGresult *r;
    if (rc != 0)
        return rc;
    if ((rc = exec_simple(b, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen)) != 0)
        return rc;
    if ((r = run(b, SELECT_USERS, 1, realm, NULL, NULL, "reading turnusers_lt", err, errlen)) == NULL)
        rc = NK_ERR_SYSTEM;
    else {
        rc = add_users(out, r);
        PQclear(r);
    }
    if (rc == 0) {
        r = run(b, "SELECT value FROM turn_secret WHERE realm = $1::text", 1, realm, NULL, NULL, "reading turn_secret",
                err, errlen);
        if (r == NULL)
            rc = NK_ERR_SYSTEM;
        for (int i = 0; r != NULL && i < PQntuples(r) && rc == 0; i++)
            rc = PQgetisnull(r, i, 0) ? (out->skipped++, 0) : nk__udb_snap_add_secret(out, PQgetvalue(r, i, 0));
        PQclear(r);
    }
    if (b->c != NULL) {
        PGresult *e = PQexec(b->c, rc == 0 ? "COMMIT" : "ROLLBACK");
        PQclear(e);
    }
    return rc;
}

int nk__udb_psql_get_user(nk__udb_psql *b, const char *realm, const char *name, nk__udb_snap *into, char *err,
                          size_t errlen)
{
    int rc = b->c == NULL ? open_conn(b, err, errlen) : 0;
    if (rc != 0)
        return rc;
    PGresult *r = run(b, SELECT_USERS " AND name = $2::text", 2, realm, name, NULL, "reading turnusers_lt", err,
                      errlen);
    if (r == NULL)
        return NK_ERR_SYSTEM;
    rc = add_users(into, r);
    PQclear(r);
    return rc;
}

/* ---- administration ---- */

static int admin_op(nk__udb_psql *b, const nk_turn_userdb_options *o, int op, const char *name, const char *value,
                    void (*fn)(void *, const char *, const char *), void *ctx, char *err, size_t errlen)
{
    const char *realm = o->realm;
    PGresult *r = NULL;
    int rc = 0;
    switch (op) {
    case NK__UDB_PUT_USER: /* as turnadmin: update, else insert (no ON CONFLICT: any key the table has) */
        if ((rc = exec_simple(b, "BEGIN", err, errlen)) != 0)
            return rc;
        r = run(b, "UPDATE turnusers_lt SET hmackey = $3::text WHERE realm = $1::text AND name = $2::text", 3, realm,
                name, value, "writing turnusers_lt", err, errlen);
        if (r != NULL && strcmp(PQcmdTuples(r), "0") == 0) {
            PQclear(r);
            r = run(b, "INSERT INTO turnusers_lt (realm, name, hmackey) VALUES ($1::text, $2::text, $3::text)", 3,
                    realm, name, value, "writing turnusers_lt", err, errlen);
        }
        rc = r != NULL ? exec_simple(b, "COMMIT", err, errlen) : NK_ERR_SYSTEM;
        PQclear(r);
        return rc;
    case NK__UDB_ADD_SECRET:
        r = run(b, "INSERT INTO turn_secret (realm, value) SELECT $1::text, $2::text WHERE NOT EXISTS "
                   "(SELECT 1 FROM turn_secret WHERE realm = $1::text AND value = $2::text)",
                2, realm, value, NULL, "writing turn_secret", err, errlen);
        PQclear(r);
        return r != NULL ? 0 : NK_ERR_SYSTEM;
    case NK__UDB_DEL_USER:
        r = run(b, "DELETE FROM turnusers_lt WHERE realm = $1::text AND name = $2::text", 2, realm, name, NULL,
                "writing turnusers_lt", err, errlen);
        break;
    case NK__UDB_DEL_SECRET:
        r = value != NULL ? run(b, "DELETE FROM turn_secret WHERE realm = $1::text AND value = $2::text", 2, realm,
                                value, NULL, "writing turn_secret", err, errlen)
                          : run(b, "DELETE FROM turn_secret WHERE realm = $1::text", 1, realm, NULL, NULL,
                                "writing turn_secret", err, errlen);
        break;
    default: /* NK__UDB_LIST, sorted by bytes as the other backends */
        r = realm != NULL ? run(b, "SELECT realm, name FROM turnusers_lt WHERE realm = $1::text "
                                   "ORDER BY realm COLLATE \"C\", name COLLATE \"C\"",
                                1, realm, NULL, NULL, "reading turnusers_lt", err, errlen)
                          : run(b, "SELECT realm, name FROM turnusers_lt ORDER BY realm COLLATE \"C\", name COLLATE \"C\"",
                                0, NULL, NULL, NULL, "reading turnusers_lt", err, errlen);
        if (r == NULL)
            return NK_ERR_SYSTEM;
        for (int i = 0; i < PQntuples(r); i++)
            if (fn != NULL && !PQgetisnull(r, i, 0) && !PQgetisnull(r, i, 1))
                fn(ctx, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        PQclear(r);
        return 0;
    }
    if (r == NULL)
        return NK_ERR_SYSTEM;
    rc = strcmp(PQcmdTuples(r), "0") == 0 ? NK_ERR_NOT_FOUND : 0;
    PQclear(r);
    if (rc == NK_ERR_NOT_FOUND)
        nk__udb_seterr(err, errlen, "%s '%s' is not in realm %s of the %s", op == NK__UDB_DEL_USER ? "user" : "secret",
                       op == NK__UDB_DEL_USER ? name : (value != NULL ? "..." : "(any)"), realm, b->where);
    return rc;
}

int nk__udb_psql_admin(const nk_turn_userdb_options *o, int op, const char *name, const char *value,
                       void (*fn)(void *, const char *, const char *), void *ctx, char *err, size_t errlen)
{
    nk__udb_psql *b = NULL;
    int rc = nk__udb_psql_open(&b, o->psql, err, errlen);
    if (rc != 0)
        return rc;
    rc = admin_op(b, o, op, name, value, fn, ctx, err, errlen);
    nk__udb_psql_close(b);
    return rc;
}
