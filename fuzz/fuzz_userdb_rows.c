/*
 * Fuzz target: the TURN user database's rows as natkit reads them (src/io/turn_userdb*.c), from a
 * coturn SQLite or PostgreSQL database (turnusers_lt name/hmackey, turn_secret value: the same
 * nk__udb_snap_add_hex / add_secret calls in turn_userdb_sqlite.c and turn_userdb_psql.c) or Redis keys
 * (turn/realm/R/user/NAME/key = hex hmackey, turn/realm/R/secret/...) into a snapshot.
 *
 * Input: lines; the first is the realm, each next one is TAG<TAB>A[<TAB>B]:
 *   U name hex   a turnusers_lt row (nk__udb_snap_add_hex)
 *   K key hex    a Redis user key and its value (nk__udb_redis_key_user, then add_hex)
 *   S value      a secret (nk__udb_snap_add_secret)
 * Checks: a row taken is found by its name with its key; a row not taken is counted in skipped;
 * the snapshot's counts stay bounded by the rows given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "turn_userdb_internal.h"

static void check_user(const nk__udb_snap *s, const char *name, const char *hex, uint64_t skipped_before)
{
    uint8_t key[16];
    const nk__udb_user *u = nk__udb_snap_find(s, name);
    if (nk__udb_hex_key(hex, key) != 0 || *name == '\0' || strlen(name) > 512) {
        if (s->skipped != skipped_before + 1)
            abort();
        return;
    }
    if (u == NULL || strcmp(u->name, name) != 0 || memcmp(u->key, key, 16) != 0)
        abort();
    char back[33];
    nk__udb_key_hex(key, back);
    uint8_t again[16];
    if (nk__udb_hex_key(back, again) != 0 || memcmp(again, key, 16) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nk__udb_snap s;
    char *text = malloc(size + 1), *save = NULL;
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (nk__udb_snap_init(&s) != 0) {
        free(text);
        return 0;
    }
    char *line = strtok_r(text, "\n", &save);
    const char *realm = line != NULL ? line : "";
    size_t rows = 0;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *a = strchr(line, '\t'), *b = a != NULL ? strchr(a + 1, '\t') : NULL;
        if (a == NULL)
            continue;
        *a++ = '\0';
        if (b != NULL)
            *b++ = '\0';
        uint64_t skipped = s.skipped;
        rows++;
        if (strcmp(line, "U") == 0 && b != NULL) {
            if (nk__udb_snap_add_hex(&s, a, b) != 0)
                break;
            check_user(&s, a, b, skipped);
        } else if (strcmp(line, "K") == 0 && b != NULL) {
            char name[600];
            const char *u = nk__udb_redis_key_user(a, realm, "/key", name, sizeof(name));
            if (u == NULL)
                continue;
            if (strlen(u) >= sizeof(name) || strstr(a, u) == NULL)
                abort();
            if (nk__udb_snap_add_hex(&s, u, b) != 0)
                break;
            check_user(&s, u, b, skipped);
        } else if (strcmp(line, "S") == 0) {
            size_t before = s.nsecrets;
            if (nk__udb_snap_add_secret(&s, a) != 0)
                break;
            if (*a == '\0' ? s.skipped != skipped + 1 : s.nsecrets > before + 1)
                abort();
        }
    }
    if (s.nusers > rows || s.nsecrets > rows || s.skipped > rows)
        abort();
    nk__udb_snap_free(&s);
    free(text);
    return 0;
}
