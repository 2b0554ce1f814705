/* natkit: export macro and the one integer error space shared by every module. */
#ifndef NATKIT_COMMON_H
#define NATKIT_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NK_BUILDING_LIBRARY)
#define NK_API __attribute__((visibility("default")))
#else
#define NK_API
#endif

/*
 * Errors: 0 is success, every failure is a negative code. STUN/TURN error
 * responses (300..699) map into the same space as NK_ERR_STUN(code), the way
 * picotls maps TLS alerts, so a caller sees one kind of number everywhere.
 */
#define NK_ERR_INVAL        (-1)  /* invalid argument */
#define NK_ERR_NOMEM        (-2)  /* out of memory */
#define NK_ERR_NOBUFS       (-3)  /* caller's buffer too small */
#define NK_ERR_TRUNCATED    (-4)  /* input shorter than its lengths claim */
#define NK_ERR_MALFORMED    (-5)  /* input does not parse */
#define NK_ERR_NOT_STUN     (-6)  /* not a STUN message at all */
#define NK_ERR_INTEGRITY    (-7)  /* MESSAGE-INTEGRITY(-SHA256) mismatch or missing */
#define NK_ERR_FINGERPRINT  (-8)  /* FINGERPRINT mismatch */
#define NK_ERR_NOT_FOUND    (-9)  /* attribute/entry absent */
#define NK_ERR_TIMEOUT      (-10) /* no answer in time */
#define NK_ERR_AGAIN        (-11) /* nothing to hand out now (poll functions) */
#define NK_ERR_UNKNOWN_ATTR (-12) /* unknown comprehension-required attribute */
#define NK_ERR_SYSTEM       (-13) /* a system call failed; see errno */
#define NK_ERR_STATE        (-14) /* call not valid in the current state */
#define NK_ERR_UNSUPPORTED  (-15) /* feature/family/transport not supported */
#define NK_ERR_LIMIT        (-16) /* a configured limit was reached */
#define NK_ERR_ADDRESS      (-17) /* bad or unresolvable address */
#define NK_ERR_CLOSED       (-18) /* peer or object closed */
#define NK_ERR_AUTH         (-19) /* authentication failed */
#define NK_ERR_DENIED       (-20) /* refused by policy */

#define NK_ERR_STUN_BASE    (-10000)
#define NK_ERR_STUN(code)   (NK_ERR_STUN_BASE - (int)(code))
#define NK_ERR_IS_STUN(err) ((err) <= NK_ERR_STUN(300) && (err) >= NK_ERR_STUN(699))
#define NK_ERR_STUN_CODE(err) (NK_ERR_STUN_BASE - (err))

/* A deadline that never comes: what a *_next_deadline returns with nothing to wait for. */
#define NK_DEADLINE_NONE INT64_MAX

/*
 * The single source of randomness a core uses (transaction IDs, nonces,
 * keys): fill buf with len random bytes. Every config that has one takes
 * NULL for libsodium's randombytes_buf; tests inject a seeded one.
 */
typedef void (*nk_random_fn)(void *ctx, uint8_t *buf, size_t len);

/* A short English description of any natkit error code (never NULL). */
NK_API const char *nk_strerror(int err);

/*
 * What the calling thread's last failed open or start was doing, for a
 * message that names the cause: "bind 127.0.0.1:40999", "connect to hub
 * 127.0.0.1:7000", "read certificate /etc/natkit/cert.pem". *sys_errno (when
 * not NULL) gets the system error seen then (0: none), kept even when the
 * cleanup after the failure changed errno. "" when nothing was recorded.
 * The functions that fill it say so (nk_udp_open, nk_node_driver_open,
 * nk_hub_service_start, nk_turn_service_new, nk_stun_service_start); each of
 * them clears it when called.
 */
NK_API const char *nk_error_context(int *sys_errno);

/* The library version, "MAJOR.MINOR.PATCH". */
NK_API const char *nk_version(void);

#ifdef __cplusplus
}
#endif
#endif
