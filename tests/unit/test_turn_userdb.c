/*
 * natkit: TURN user databases (src/io/turn_userdb*.c): hmackey hex handling, coturn's Redis
 * connection string, the in-memory snapshot, and an SQLite file written by the admin calls and
 * read back by nk_turn_userdb (a temporary file; no thread timing is relied on: the first load
 * happens inside nk_turn_userdb_new). The live refresh and Redis are covered by
 * tests/integration/test_turn_userdb*.sh with coturn's turnadmin and a real redis-server; a
 * Redis nobody answers (a refused loopback connect) by tests/integration/c/test_turn_userdb_connect.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "natkit/stun.h"
#include "natkit/turn_server.h"
#include "natkit/turn_userdb.h"
#include "turn_userdb_internal.h"

static void test_hex_key(void **state)
{
    uint8_t k[16], want[16];
    char hex[33];
    size_t kl;
    uint8_t full[32];
    /* coturn's own example: gorst / north.gov / hero */
    assert_int_equal(nk__udb_hex_key("7da2270ccfa49786e0115366d3a3d14d", k), 0);
    nk_stun_long_term_key(NK_STUN_PWALG_MD5, "gorst", "north.gov", "hero", full, &kl);
    assert_int_equal(kl, 16);
    memcpy(want, full, 16);
    assert_memory_equal(k, want, 16);
    assert_int_equal(nk__udb_hex_key("7DA2270CCFA49786E0115366D3A3D14D", k), 0);
    assert_memory_equal(k, want, 16);
    nk__udb_key_hex(k, hex);
    assert_string_equal(hex, "7da2270ccfa49786e0115366d3a3d14d");
    /* wrong lengths (incl. a SHA-256 key of 64 digits), non-hex, NULL */
    const char *bad[] = {"", "7da2270ccfa49786e0115366d3a3d14", "7da2270ccfa49786e0115366d3a3d14d0",
                         "7da2270ccfa49786e0115366d3a3d14g", " 7da2270ccfa49786e0115366d3a3d14",
                         "7da2270ccfa49786e0115366d3a3d14d7da2270ccfa49786e0115366d3a3d14d"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(nk__udb_hex_key(bad[i], k), NK_ERR_MALFORMED);
    assert_int_equal(nk__udb_hex_key(NULL, k), NK_ERR_MALFORMED);
}

static void test_conninfo(void **state)
{
    nk__redis_conninfo ci;
    char bad[64];
    assert_int_equal(nk__redis_conninfo_parse(&ci, "", bad), 0);
    assert_string_equal(ci.host, "127.0.0.1");
    assert_int_equal(ci.port, 6379);
    assert_int_equal(ci.dbname, 0);
    assert_string_equal(ci.password, "");
    assert_int_equal(nk__redis_conninfo_parse(
                         &ci, "ip=10.0.0.7 dbname=2 password=turn port=6380 connect_timeout=30", bad),
                     0);
    assert_string_equal(ci.host, "10.0.0.7");
    assert_int_equal(ci.dbname, 2);
    assert_string_equal(ci.password, "turn");
    assert_int_equal(ci.port, 6380);
    assert_int_equal(ci.connect_timeout_s, 30);
    /* coturn's aliases, extra blanks, ignored user names */
    assert_int_equal(nk__redis_conninfo_parse(&ci, "  host=h  db=3\tpwd=x p=7 timeout=1 user=u  ", bad), 0);
    assert_string_equal(ci.host, "h");
    assert_int_equal(ci.dbname, 3);
    assert_string_equal(ci.password, "x");
    assert_int_equal(ci.port, 7);
    assert_int_equal(ci.connect_timeout_s, 1);
    /* refused, with the word named */
    assert_int_equal(nk__redis_conninfo_parse(&ci, "ip=127.0.0.1 prt=1", bad), NK_ERR_MALFORMED);
    assert_string_equal(bad, "prt=1");
    const char *refused[] = {"port=0", "port=65536", "port=x", "dbname=-1", "ip=", "novalue", "=x",
                             "connect_timeout=99999999999"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_int_equal(nk__redis_conninfo_parse(&ci, refused[i], bad), NK_ERR_MALFORMED);
    char longhost[400];
    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    memcpy(longhost, "ip=", 3);
    assert_int_equal(nk__redis_conninfo_parse(&ci, longhost, bad), NK_ERR_MALFORMED);
    assert_int_equal(strlen(bad), 63);
}

static void test_snapshot(void **state)
{
    nk__udb_snap s;
    uint8_t k[16];
    char name[32];
    assert_int_equal(nk__udb_snap_init(&s), 0);
    for (int i = 0; i < 5000; i++) { /* the table grows */
        snprintf(name, sizeof(name), "user%d", i);
        memset(k, i & 0xff, 16);
        assert_int_equal(nk__udb_snap_add_user(&s, name, k), 0);
    }
    assert_int_equal(s.nusers, 5000);
    for (int i = 0; i < 5000; i += 499) {
        snprintf(name, sizeof(name), "user%d", i);
        const nk__udb_user *u = nk__udb_snap_find(&s, name);
        assert_non_null(u);
        assert_int_equal(u->key[0], i & 0xff);
    }
    assert_null(nk__udb_snap_find(&s, "user5000"));
    /* a second row for a name replaces the key */
    memset(k, 0xee, 16);
    assert_int_equal(nk__udb_snap_add_user(&s, "user7", k), 0);
    assert_int_equal(s.nusers, 5000);
    assert_int_equal(nk__udb_snap_find(&s, "user7")->key[3], 0xee);
    /* rows natkit cannot use are counted, not fatal */
    assert_int_equal(
        nk__udb_snap_add_hex(&s, "sha256user", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"), 0);
    assert_int_equal(nk__udb_snap_add_hex(&s, "", "7da2270ccfa49786e0115366d3a3d14d"), 0);
    assert_int_equal(s.skipped, 2);
    assert_null(nk__udb_snap_find(&s, "sha256user"));
    assert_int_equal(nk__udb_snap_add_secret(&s, "a"), 0);
    assert_int_equal(nk__udb_snap_add_secret(&s, "a"), 0);
    assert_int_equal(nk__udb_snap_add_secret(&s, "b"), 0);
    assert_int_equal(s.nsecrets, 2);
    nk__udb_snap_free(&s);
}

static void list_collect(void *ctx, const char *realm, const char *user)
{
    char *out = ctx;
    strcat(out, user);
    strcat(out, "@");
    strcat(out, realm);
    strcat(out, " ");
}

static void rest_pass(const char *secret, const char *user, char *pass)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    HMAC(EVP_sha1(), secret, (int)strlen(secret), (const uint8_t *)user, strlen(user), mac, &len);
    EVP_EncodeBlock((unsigned char *)pass, mac, (int)len);
}

static void test_sqlite_file(void **state)
{
    char path[] = "/tmp/nk_userdb_XXXXXX", err[600], listed[512] = "";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path); /* the admin call creates it with coturn's schema */
    nk_turn_userdb_options o;
    nk_turn_userdb_options_init(&o);
    o.sqlite_path = path;
    o.realm = "example.org";
    assert_int_equal(nk_turn_userdb_put_user(&o, "alice", "secret", err, sizeof(err)), 0);
    assert_int_equal(nk_turn_userdb_put_user(&o, "bob", "builder", err, sizeof(err)), 0);
    assert_int_equal(nk_turn_userdb_add_secret(&o, "restsecret", err, sizeof(err)), 0);
    o.realm = "other.org";
    assert_int_equal(nk_turn_userdb_put_user(&o, "carol", "x", err, sizeof(err)), 0);
    o.realm = NULL;
    assert_int_equal(nk_turn_userdb_list(&o, list_collect, listed, err, sizeof(err)), 0);
    assert_string_equal(listed, "alice@example.org bob@example.org carol@other.org ");
    o.realm = "example.org";
    assert_int_equal(nk_turn_userdb_delete_user(&o, "nobody", err, sizeof(err)), NK_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "nobody"));

    nk_turn_userdb *db;
    assert_int_equal(nk_turn_userdb_new(&db, &o, err, sizeof(err)), 0);
    nk_turn_userdb_stats_t st;
    nk_turn_userdb_stats(db, &st);
    assert_int_equal(st.users, 2); /* carol is in another realm */
    assert_int_equal(st.secrets, 1);
    uint8_t keys[4][16], want[32];
    size_t kl;
    assert_int_equal(nk_turn_userdb_keys(db, "example.org", "alice", 1700000000, keys, 4), 1);
    nk_stun_long_term_key(NK_STUN_PWALG_MD5, "alice", "example.org", "secret", want, &kl);
    assert_memory_equal(keys[0], want, 16);
    assert_int_equal(nk_turn_userdb_keys(db, "example.org", "carol", 1700000000, keys, 4), 0);
    assert_int_equal(nk_turn_userdb_keys(db, "other.org", "alice", 1700000000, keys, 4), 0);
    /* REST: an unexpired name gets the key of its secret; an expired one none */
    char pass[64];
    rest_pass("restsecret", "1700000060:erin", pass);
    assert_int_equal(nk_turn_userdb_keys(db, "example.org", "1700000060:erin", 1700000000, keys, 4), 1);
    nk_stun_long_term_key(NK_STUN_PWALG_MD5, "1700000060:erin", "example.org", pass, want, &kl);
    assert_memory_equal(keys[0], want, 16);
    assert_int_equal(nk_turn_userdb_keys(db, "example.org", "1699999999:erin", 1700000000, keys, 4), 0);
    assert_int_equal(nk_turn_userdb_keys(db, "example.org", "alice", 1700000000, keys, 0), 0);
    nk_turn_userdb_free(db);

    /* the admin side writes what coturn reads: hex MD5 in turnusers_lt */
    assert_int_equal(nk_turn_userdb_delete_secret(&o, NULL, err, sizeof(err)), 0);
    assert_int_equal(nk_turn_userdb_delete_secret(&o, NULL, err, sizeof(err)), NK_ERR_NOT_FOUND);
    unlink(path);
}

static void test_open_errors(void **state)
{
    char path[] = "/tmp/nk_userdb_XXXXXX", err[600];
    nk_turn_userdb *db = NULL;
    nk_turn_userdb_options o;
    nk_turn_userdb_options_init(&o);
    o.realm = "example.org";
    o.sqlite_path = "/nonexistent/turndb";
    assert_int_not_equal(nk_turn_userdb_new(&db, &o, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "/nonexistent/turndb"));
    assert_non_null(strstr(err, "No such file"));
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char junk[512];
    memset(junk, 'x', sizeof(junk)); /* longer than SQLite's 100-byte header, and not one */
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    o.sqlite_path = path;
    assert_int_not_equal(nk_turn_userdb_new(&db, &o, err, sizeof(err)), 0);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "not a database"));
    unlink(path);
    o.sqlite_path = NULL;
    o.redis = "ip=127.0.0.1 bogus=1";
    assert_int_equal(nk_turn_userdb_new(&db, &o, err, sizeof(err)), NK_ERR_INVAL);
    assert_non_null(strstr(err, "bogus=1"));
    assert_null(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_key),     cmocka_unit_test(test_conninfo),   cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_sqlite_file), cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
