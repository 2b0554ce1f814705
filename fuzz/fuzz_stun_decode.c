/*
 * libFuzzer target for the STUN decoder: decodes with and without RFC 3489
 * support, then runs every getter over every indexed attribute and checks
 * integrity with a fixed key. Anything decoded must also re-frame and keep
 * its views inside the input, and re-encoding its attributes with the builder
 * (plus MESSAGE-INTEGRITY and FINGERPRINT) must decode to the same attributes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/stun.h"

static void check_views(const nk_stun_msg *m, const uint8_t *data, size_t size)
{
    if (m->raw != data || m->raw_len != size || m->nattrs > NK_STUN_MAX_ATTRS)
        abort();
    for (size_t i = 0; i < m->nattrs; i++) {
        const nk_stun_attr *a = &m->attrs[i];
        if (a->value < data + NK_STUN_HEADER_SIZE + 4 || a->value + a->len > data + size)
            abort();
    }
}

static void run_getters(const nk_stun_msg *m)
{
    static const uint8_t key[] = "fuzz-key";
    char text[128];
    nk_addr addr;
    uint32_t u32;
    uint64_t u64;
    uint16_t unknown[8];
    int code;
    const char *reason;
    size_t reason_len;

    for (size_t i = 0; i < m->nattrs; i++) {
        const nk_stun_attr *a = &m->attrs[i];
        if (nk_stun_attr_addr(m, a, &addr) == 0 && nk_addr_ip_len(&addr) == 0)
            abort();
        nk_stun_get_u32(m, a->type, &u32);
        nk_stun_get_u64(m, a->type, &u64);
        nk_stun_get_string(m, a->type, text, sizeof(text));
        nk_stun_get_addr(m, a->type, &addr);
        nk_stun_attr_known(a->type);
    }
    if (nk_stun_get_error(m, &code, &reason, &reason_len) == 0 && (code < 300 || code > 699))
        abort();
    if (nk_stun_unknown_required(m, unknown, 8) > m->nattrs)
        abort();
    nk_stun_check_integrity(m, key, sizeof(key) - 1);
}

static int is_trailer(uint16_t type)
{
    return type == NK_STUN_ATTR_MESSAGE_INTEGRITY || type == NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 ||
           type == NK_STUN_ATTR_FINGERPRINT;
}

static void check_rebuild(const nk_stun_msg *m)
{
    static const uint8_t key[] = "rebuild";
    static uint8_t buf[NK_STUN_HEADER_SIZE + 0x10000];
    nk_stun_builder b;
    size_t kept = 0;
    nk_stun_build_begin(&b, buf, sizeof(buf), m->type, m->tid);
    for (size_t i = 0; i < m->nattrs; i++) {
        if (is_trailer(m->attrs[i].type))
            continue;
        nk_stun_build_attr(&b, m->attrs[i].type, m->attrs[i].value, m->attrs[i].len);
        kept++;
    }
    if (kept + 2 > NK_STUN_MAX_ATTRS)
        return;
    nk_stun_build_integrity(&b, key, sizeof(key) - 1);
    nk_stun_build_fingerprint(&b);
    int n = nk_stun_build_end(&b);
    if (n == NK_ERR_NOBUFS && m->raw_len > 0xff00)
        return; /* the original left no room for the trailer */
    nk_stun_msg r;
    if (n <= 0 || nk_stun_decode(&r, buf, (size_t)n, 0) != 0 || r.nattrs != kept + 2 || r.type != m->type ||
        memcmp(r.tid, m->tid, NK_STUN_TID_SIZE) != 0 || nk_stun_check_integrity(&r, key, sizeof(key) - 1) != 0)
        abort();
    for (size_t i = 0, j = 0; i < m->nattrs; i++) {
        if (is_trailer(m->attrs[i].type))
            continue;
        if (r.attrs[j].type != m->attrs[i].type || r.attrs[j].len != m->attrs[i].len ||
            memcmp(r.attrs[j].value, m->attrs[i].value, m->attrs[i].len) != 0)
            abort();
        j++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nk_stun_msg m;
    size_t len;
    for (int classic = 0; classic < 2; classic++) {
        if (nk_stun_decode(&m, data, size, classic) != 0)
            continue;
        check_views(&m, data, size);
        if (!m.classic && (!nk_stun_is_message(data, size) || nk_stun_frame_length(data, size, &len) != 0 ||
                           len != size))
            abort();
        run_getters(&m);
        check_rebuild(&m);
    }
    nk_stun_frame_length(data, size, &len);
    return 0;
}
