/*
 * natkit QUIC core: the TLS 1.3 session (GnuTLS, driven by ngtcp2's crypto
 * helper). Each side presents its Ed25519 identity as a raw public key
 * (RFC 7250, both certificate types negotiated); the server requires the
 * client's. The verify callback takes the peer's SubjectPublicKeyInfo, which
 * for Ed25519 is a fixed 12-byte prefix and the 32-byte key, i.e. the peer ID,
 * and refuses a key other than the expected one. The CertificateVerify that
 * GnuTLS checks afterwards proves the peer holds the secret key.
 */
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "internal.h"

/* SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 },
 * BIT STRING (0 unused bits) key }. */
static const uint8_t spki_ed25519_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                                0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

static const char priority[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:-SIGN-ALL:+SIGN-EDDSA-ED25519:"
    "-CTYPE-ALL:+CTYPE-CLI-RAWPK:+CTYPE-SRV-RAWPK:%DISABLE_TLS13_COMPAT_MODE";

static int verify_peer(gnutls_session_t session)
{
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
    nk_quic *q = ref->user_data;
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
    if (gnutls_certificate_type_get2(session, GNUTLS_CTYPE_PEERS) != GNUTLS_CRT_RAWPK || certs == NULL ||
        n != 1 || certs[0].size != sizeof(spki_ed25519_prefix) + NK_PEER_ID_SIZE ||
        memcmp(certs[0].data, spki_ed25519_prefix, sizeof(spki_ed25519_prefix)) != 0) {
        q->auth_error = "peer presented no Ed25519 raw public key";
        return -1;
    }
    nk_peer_id got;
    memcpy(got.key, certs[0].data + sizeof(spki_ed25519_prefix), NK_PEER_ID_SIZE);
    if (q->have_expected && !nk_peer_id_equal(&got, &q->expected)) {
        q->auth_error = "peer ID mismatch";
        return -1;
    }
    q->peer = got;
    q->peer_verified = 1;
    return 0;
}

/* Our identity as a raw public key credential: SPKI (built from the peer ID) and the PKCS#8
 * private key (GnuTLS encodes it from the seed). */
static int set_identity(nk_quic *q)
{
    gnutls_x509_privkey_t xk = NULL;
    gnutls_datum_t der = {NULL, 0};
    uint8_t spki[sizeof(spki_ed25519_prefix) + NK_PEER_ID_SIZE];
    memcpy(spki, spki_ed25519_prefix, sizeof(spki_ed25519_prefix));
    memcpy(spki + sizeof(spki_ed25519_prefix), q->identity.id.key, NK_PEER_ID_SIZE);
    gnutls_datum_t x = {q->identity.id.key, NK_PEER_ID_SIZE};
    gnutls_datum_t k = {q->identity.secret, 32}; /* libsodium secret: seed || public key */
    gnutls_datum_t pub = {spki, sizeof(spki)};
    int rv = gnutls_x509_privkey_init(&xk);
    if (rv == 0)
        rv = gnutls_x509_privkey_import_ecc_raw(xk, GNUTLS_ECC_CURVE_ED25519, &x, NULL, &k);
    if (rv == 0)
        rv = gnutls_x509_privkey_export2_pkcs8(xk, GNUTLS_X509_FMT_DER, NULL, GNUTLS_PKCS_PLAIN, &der);
    if (rv == 0)
        rv = gnutls_certificate_set_rawpk_key_mem(q->cred, &pub, &der, GNUTLS_X509_FMT_DER, NULL, 0, NULL, 0,
                                                  0);
    if (der.data != NULL) {
        gnutls_memset(der.data, 0, der.size);
        gnutls_free(der.data);
    }
    if (xk != NULL)
        gnutls_x509_privkey_deinit(xk);
    return rv < 0 ? NK_ERR_AUTH : 0;
}

/* Keeps the exporter master secret (TLS 1.3 hands every secret to the keylog hook), so that the
 * session can go after the handshake; GnuTLS's own hook (SSLKEYLOGFILE) still runs. */
static int keylog(gnutls_session_t session, const char *label, const gnutls_datum_t *secret)
{
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
    nk_quic *q = ref->user_data;
    if (strcmp(label, "EXPORTER_SECRET") == 0 && secret->size <= sizeof(q->exp_secret)) {
        memcpy(q->exp_secret, secret->data, secret->size);
        q->exp_len = secret->size;
    }
    return q->keylog_prev != NULL ? q->keylog_prev(session, label, secret) : 0;
}

/* HKDF-Expand-Label (RFC 8446 7.1) with the hash of the cipher suite. */
static int expand_label(int mac, const uint8_t *secret, size_t secret_len, const char *label, const uint8_t *ctx,
                        size_t ctx_len, uint8_t *out, size_t len)
{
    uint8_t info[2 + 1 + 255 + 1 + 255];
    size_t ll = strlen(label);
    if (len > 0xffff || 6 + ll > 255 || ctx_len > 255)
        return -1;
    size_t k = 0;
    info[k++] = (uint8_t)(len >> 8);
    info[k++] = (uint8_t)len;
    info[k++] = (uint8_t)(6 + ll);
    memcpy(info + k, "tls13 ", 6);
    memcpy(info + k + 6, label, ll);
    k += 6 + ll;
    info[k++] = (uint8_t)ctx_len;
    memcpy(info + k, ctx, ctx_len);
    k += ctx_len;
    gnutls_datum_t key = {(unsigned char *)secret, (unsigned)secret_len}, in = {info, (unsigned)k};
    return gnutls_hkdf_expand((gnutls_mac_algorithm_t)mac, &key, &in, out, len) == 0 ? 0 : -1;
}

/* TLS-Exporter (RFC 8446 7.5) from the exporter master secret:
 * HKDF-Expand-Label(Derive-Secret(secret, label, ""), "exporter", Hash(context), len). */
static int export_from_secret(const nk_quic *q, const char *label, const uint8_t *context, size_t context_len,
                              uint8_t *out, size_t len)
{
    gnutls_digest_algorithm_t md = (gnutls_digest_algorithm_t)q->exp_mac; /* same numbering as the MACs */
    uint8_t empty_hash[64], ctx_hash[64], derived[64];
    size_t hl = gnutls_hash_get_len(md);
    if (hl == 0 || hl > sizeof(derived) || hl != q->exp_len || strlen(label) > 249)
        return -1;
    int rc = -1;
    if (gnutls_hash_fast(md, "", 0, empty_hash) == 0 &&
        gnutls_hash_fast(md, context_len > 0 ? context : (const uint8_t *)"", context_len, ctx_hash) == 0 &&
        expand_label(q->exp_mac, q->exp_secret, q->exp_len, label, empty_hash, hl, derived, hl) == 0)
        rc = expand_label(q->exp_mac, derived, hl, "exporter", ctx_hash, hl, out, len);
    gnutls_memset(derived, 0, sizeof(derived));
    return rc;
}

void nk__quic_tls_drop(nk_quic *q)
{
    q->tls_drop_pending = 0;
    if (q->tls == NULL || q->exp_len == 0)
        return;
    q->exp_mac = (int)gnutls_prf_hash_get(q->tls);
    /* Only when this reproduces GnuTLS's exporter exactly: else the session stays. */
    static const char label[] = "EXPORTER-natkit-selfcheck";
    uint8_t mine[32], theirs[32];
    if (export_from_secret(q, label, NULL, 0, mine, sizeof(mine)) != 0 ||
        gnutls_prf_rfc5705(q->tls, sizeof(label) - 1, label, 0, NULL, sizeof(theirs), (char *)theirs) != 0 ||
        memcmp(mine, theirs, sizeof(mine)) != 0)
        return;
    ngtcp2_conn_set_tls_native_handle(q->conn, NULL);
    nk__quic_tls_free(q);
}

int nk__quic_tls_new(nk_quic *q)
{
    int server = q->cfg.role == NK_QUIC_SERVER;
    if (gnutls_certificate_allocate_credentials(&q->cred) != 0)
        return NK_ERR_NOMEM;
    int err = set_identity(q);
    if (err < 0)
        return err;
    gnutls_certificate_set_verify_function(q->cred, verify_peer);
    unsigned flags = (server ? GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET : GNUTLS_CLIENT) | GNUTLS_ENABLE_RAWPK |
                     GNUTLS_NO_END_OF_EARLY_DATA;
    if (gnutls_init(&q->tls, flags) != 0)
        return NK_ERR_NOMEM;
    int rv = server ? ngtcp2_crypto_gnutls_configure_server_session(q->tls)
                    : ngtcp2_crypto_gnutls_configure_client_session(q->tls);
    if (rv != 0 || gnutls_priority_set_direct(q->tls, priority, NULL) != 0 ||
        gnutls_credentials_set(q->tls, GNUTLS_CRD_CERTIFICATE, q->cred) != 0)
        return NK_ERR_UNSUPPORTED;
    gnutls_session_set_ptr(q->tls, &q->conn_ref);
    q->keylog_prev = gnutls_session_get_keylog_function(q->tls);
    gnutls_session_set_keylog_function(q->tls, keylog);
    q->exp_len = 0;
    if (server)
        gnutls_certificate_server_set_request(q->tls, GNUTLS_CERT_REQUIRE);
    const gnutls_datum_t alpn = {(unsigned char *)NK_QUIC_ALPN, sizeof(NK_QUIC_ALPN) - 1};
    if (gnutls_alpn_set_protocols(q->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0)
        return NK_ERR_UNSUPPORTED;
    return 0;
}

void nk__quic_tls_free(nk_quic *q)
{
    if (q->tls != NULL)
        gnutls_deinit(q->tls);
    if (q->cred != NULL)
        gnutls_certificate_free_credentials(q->cred);
    q->tls = NULL;
    q->cred = NULL;
}

int nk_quic_export(nk_quic *q, const char *label, const uint8_t *context, size_t context_len, uint8_t *out,
                   size_t len)
{
    if (q == NULL || label == NULL || out == NULL || (context == NULL && context_len > 0))
        return NK_ERR_INVAL;
    if (q->state != NK__Q_CONNECTED)
        return NK_ERR_STATE;
    if (q->tls == NULL) /* dropped after the handshake */
        return export_from_secret(q, label, context, context_len, out, len) == 0 ? 0 : NK_ERR_INVAL;
    int rv = gnutls_prf_rfc5705(q->tls, strlen(label), label, context_len, (const char *)context, len,
                                (char *)out);
    return rv == 0 ? 0 : NK_ERR_INVAL;
}
