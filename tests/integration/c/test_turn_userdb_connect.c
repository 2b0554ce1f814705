/*
 * natkit: TURN user databases (src/io/turn_userdb*.c) on a real socket: a Redis nobody answers
 * (127.0.0.1 port 1, the connect refused) fails nk_turn_userdb_new with a message naming the
 * address. The in-memory parts (hex keys, the connection string, the snapshot, SQLite files
 * and their errors) are tests/unit/test_turn_userdb.c; a real redis-server and coturn's
 * turnadmin are tests/integration/test_turn_userdb*.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/turn_userdb.h"

static void test_open_redis_refused(void **state)
{
    (void)state;
    char err[600];
    nk_turn_userdb *db = NULL;
    nk_turn_userdb_options o;
    nk_turn_userdb_options_init(&o);
    o.realm = "example.org";
    o.redis = "ip=127.0.0.1 port=1 connect_timeout=1";
    assert_int_not_equal(nk_turn_userdb_new(&db, &o, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "127.0.0.1:1"));
    assert_null(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_redis_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
