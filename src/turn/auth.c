/*
 * natkit: the TURN server's credentials and nonces.
 *
 * Long-term credentials (RFC 8489 9.2): accounts keep only the MD5 key of
 * "user:realm:pass". TURN REST ephemeral credentials (the coturn
 * "use-auth-secret" scheme): the username is "expiry:user" with expiry a
 * Unix time, the password base64(HMAC-SHA1(secret, username)).
 *
 * Nonces are stateless: 8 hex digits of the issue time (seconds of the
 * core's clock) and 24 hex digits of HMAC-SHA1(nonce_key, time || client IP),
 * so issuing one costs no memory and a forged or stale one is recognised.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "cursor.h"
#include "server_internal.h"

static void nonce_mac(const nk__turn_auth *a, uint32_t t, const nk_addr *client, char hex[25])
{
    uint8_t msg[4 + 1 + 16], mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    nk__store_u32(msg, t);
    msg[4] = client->family;
    memset(msg + 5, 0, 16);
    memcpy(msg + 5, client->ip, nk_addr_ip_len(client));
    HMAC(EVP_sha1(), a->nonce_key, sizeof(a->nonce_key), msg, sizeof(msg), mac, &mac_len);
    for (int i = 0; i < 12; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
}

void nk__turn_nonce_make(const nk__turn_auth *a, int64_t now_ms, const nk_addr *client,
                         char out[NK__TURN_NONCE_LEN + 1])
{
    uint32_t t = (uint32_t)(now_ms / 1000);
    snprintf(out, 9, "%08x", t);
    nonce_mac(a, t, client, out + 8);
}

int nk__turn_nonce_check(const nk__turn_auth *a, int64_t now_ms, const nk_addr *client, const char *nonce)
{
    char want[25], *end;
    char ts[9];
    if (strlen(nonce) != NK__TURN_NONCE_LEN)
        return NK_ERR_AUTH;
    memcpy(ts, nonce, 8);
    ts[8] = '\0';
    unsigned long t = strtoul(ts, &end, 16);
    if (*end != '\0')
        return NK_ERR_AUTH;
    nonce_mac(a, (uint32_t)t, client, want);
    if (CRYPTO_memcmp(want, nonce + 8, 24) != 0)
        return NK_ERR_AUTH;
    uint32_t now_s = (uint32_t)(now_ms / 1000);
    if ((uint32_t)(now_s - (uint32_t)t) >= a->nonce_lifetime_s)
        return NK_ERR_TIMEOUT;
    return 0;
}

int nk__turn_auth_add_account(nk__turn_auth *a, const char *user, const char *pass)
{
    uint8_t key[32];
    size_t key_len;
    if (user == NULL || pass == NULL || *user == '\0' || strlen(user) > 513)
        return NK_ERR_INVAL;
    int err = nk_stun_long_term_key(NK_STUN_PWALG_MD5, user, a->realm, pass, key, &key_len);
    if (err != 0)
        return err;
    nk__turn_account *v = realloc(a->accounts, (a->naccounts + 1) * sizeof(*v));
    if (v == NULL)
        return NK_ERR_NOMEM;
    a->accounts = v;
    nk__turn_account *acc = &v[a->naccounts];
    acc->name = strdup(user);
    if (acc->name == NULL)
        return NK_ERR_NOMEM;
    memcpy(acc->key, key, NK__TURN_KEY_MAX);
    sodium_memzero(key, sizeof(key));
    a->naccounts++;
    return 0;
}

/* TURN REST: expiry from "expiry[:user]"; password = base64(HMAC-SHA1(secret, username)). */
int nk_turn_rest_key(const char *secret, size_t secret_len, const char *realm, const char *user, int64_t unix_s,
                     uint8_t key[16])
{
    char *end;
    uint8_t mac[EVP_MAX_MD_SIZE], full[32];
    unsigned char pass[64];
    unsigned mac_len = 0;
    size_t key_len;
    if (secret == NULL || realm == NULL || user == NULL || key == NULL || user[0] < '0' || user[0] > '9')
        return NK_ERR_AUTH;
    errno = 0;
    long long expiry = strtoll(user, &end, 10);
    /* in seconds: expiry * 1000 could overflow for a username the client chose */
    if (errno == ERANGE || (*end != '\0' && *end != ':') || expiry < unix_s)
        return NK_ERR_AUTH;
    HMAC(EVP_sha1(), secret, (int)secret_len, (const uint8_t *)user, strlen(user), mac, &mac_len);
    EVP_EncodeBlock(pass, mac, (int)mac_len);
    int err = nk_stun_long_term_key(NK_STUN_PWALG_MD5, user, realm, (const char *)pass, full, &key_len);
    if (err == 0)
        memcpy(key, full, NK__TURN_KEY_MAX);
    sodium_memzero(full, sizeof(full));
    sodium_memzero(pass, sizeof(pass));
    return err == 0 ? 0 : NK_ERR_AUTH;
}

static int rest_key(const nk__turn_auth *a, int64_t now_ms, const char *user, uint8_t key[NK__TURN_KEY_MAX])
{
    return nk_turn_rest_key(a->secret, a->secret_len, a->realm, user, (now_ms + a->unix_offset_ms) / 1000, key);
}

int nk__turn_auth_key(const nk__turn_auth *a, int64_t now_ms, const char *user, uint8_t key[NK__TURN_KEY_MAX])
{
    for (size_t i = 0; i < a->naccounts; i++) {
        if (strcmp(a->accounts[i].name, user) == 0) {
            memcpy(key, a->accounts[i].key, NK__TURN_KEY_MAX);
            return 0;
        }
    }
    if (a->secret != NULL)
        return rest_key(a, now_ms, user, key);
    return NK_ERR_AUTH;
}

const char *nk__turn_quota_name(const nk__turn_auth *a, const char *user)
{
    if ((a->secret == NULL && !a->external) || user[0] < '0' || user[0] > '9')
        return user;
    const char *colon = strchr(user, ':');
    return colon != NULL ? colon + 1 : user;
}

void nk__turn_auth_free(nk__turn_auth *a)
{
    for (size_t i = 0; i < a->naccounts; i++) {
        sodium_memzero(a->accounts[i].key, NK__TURN_KEY_MAX);
        free(a->accounts[i].name);
    }
    free(a->accounts);
    if (a->secret != NULL) {
        sodium_memzero(a->secret, a->secret_len);
        free(a->secret);
    }
    free(a->realm);
    sodium_memzero(a->nonce_key, sizeof(a->nonce_key));
    memset(a, 0, sizeof(*a));
}
