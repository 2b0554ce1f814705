/*
 * Fuzz target: coturn's Redis connection string as natkit parses it
 * (nk__redis_conninfo_parse, src/io/turn_userdb_redis.c), from --redis-userdb and redis-userdb= in
 * a turn-server config. Checks that what it accepts is bounded and NUL-terminated, and that a
 * refusal names a bounded word.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "turn_userdb_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nk__redis_conninfo ci;
    char bad[64];
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    int rc = nk__redis_conninfo_parse(&ci, s, bad);
    if (rc == 0) {
        if (strlen(ci.host) >= sizeof(ci.host) || ci.host[0] == '\0' || strlen(ci.password) >= sizeof(ci.password) ||
            ci.port == 0)
            abort();
    } else if (strlen(bad) >= sizeof(bad)) {
        abort();
    }
    free(s);
    return 0;
}
