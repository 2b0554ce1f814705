/* Identity: key generation, peer ID text form, signatures, key files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "natkit/identity.h"

static char tmpdir[256];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/nk_identity_XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_in_tmp(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void test_format_parse_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++) {
        nk_identity id;
        nk_peer_id back;
        char text[NK_PEER_ID_STRLEN];
        assert_int_equal(nk_identity_generate(&id), 0);
        nk_peer_id_format(&id.id, text, sizeof(text));
        assert_int_equal(strlen(text), NK_PEER_ID_STRLEN - 1);
        for (size_t k = 0; text[k] != '\0'; k++)
            assert_true((text[k] >= 'a' && text[k] <= 'z') || (text[k] >= '2' && text[k] <= '7'));
        assert_int_equal(nk_peer_id_parse(&back, text), 0);
        assert_true(nk_peer_id_equal(&back, &id.id));
        assert_memory_equal(back.key, id.id.key, NK_PEER_ID_SIZE);
        nk_identity_wipe(&id);
    }
}

/* A fixed key gives a fixed text (guards the bit order of the base32 coder). */
static void test_format_known_value(void **state)
{
    (void)state;
    nk_peer_id p;
    char text[NK_PEER_ID_STRLEN];
    memset(p.key, 0, sizeof(p.key));
    p.key[0] = 0xff;
    p.key[31] = 0x01;
    nk_peer_id_format(&p, text, sizeof(text));
    /* checked against Python's base64.b32encode, lower-cased, padding dropped */
    assert_string_equal(text, "74aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaq");
    /* too small a buffer yields an empty string, never an overflow */
    char small[10];
    assert_ptr_equal(nk_peer_id_format(&p, small, sizeof(small)), small);
    assert_string_equal(small, "");
}

static void test_parse_rejects_bad_ids(void **state)
{
    (void)state;
    nk_identity id;
    nk_peer_id out;
    char good[NK_PEER_ID_STRLEN], bad[NK_PEER_ID_STRLEN + 8];
    assert_int_equal(nk_identity_generate(&id), 0);
    nk_peer_id_format(&id.id, good, sizeof(good));

    assert_int_equal(nk_peer_id_parse(&out, ""), NK_ERR_INVAL);
    /* one character short and one too many */
    memcpy(bad, good, 51);
    bad[51] = '\0';
    assert_int_equal(nk_peer_id_parse(&out, bad), NK_ERR_INVAL);
    snprintf(bad, sizeof(bad), "%sa", good);
    assert_int_equal(nk_peer_id_parse(&out, bad), NK_ERR_INVAL);
    /* characters outside the alphabet */
    static const char not_b32[] = {'0', '1', '8', '9', '=', ' ', '-', '\n'};
    for (size_t i = 0; i < sizeof(not_b32); i++) {
        memcpy(bad, good, sizeof(good));
        bad[10] = not_b32[i];
        assert_int_equal(nk_peer_id_parse(&out, bad), NK_ERR_INVAL);
    }
    /* non-canonical trailing bits: the last character carries 1 bit + 4 zero bits */
    memcpy(bad, good, sizeof(good));
    bad[51] = bad[51] == 'a' ? 'b' : (bad[51] == 'q' ? 'r' : 'b');
    assert_int_equal(nk_peer_id_parse(&out, bad), NK_ERR_INVAL);
    /* all zeros is a small-order point: not a usable identity */
    assert_int_equal(nk_peer_id_parse(&out, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), NK_ERR_INVAL);
    /* upper case is accepted and means the same key */
    memcpy(bad, good, sizeof(good));
    for (size_t k = 0; bad[k] != '\0'; k++)
        if (bad[k] >= 'a' && bad[k] <= 'z')
            bad[k] = (char)(bad[k] - 'a' + 'A');
    assert_int_equal(nk_peer_id_parse(&out, bad), 0);
    assert_true(nk_peer_id_equal(&out, &id.id));
    assert_int_equal(nk_peer_id_parse(NULL, good), NK_ERR_INVAL);
    assert_int_equal(nk_peer_id_parse(&out, NULL), NK_ERR_INVAL);
    nk_identity_wipe(&id);
}

static void test_sign_verify(void **state)
{
    (void)state;
    nk_identity a, b;
    uint8_t sig[NK_SIGNATURE_SIZE];
    const uint8_t msg[] = "hub challenge 1234";
    assert_int_equal(nk_identity_generate(&a), 0);
    assert_int_equal(nk_identity_generate(&b), 0);
    assert_int_equal(nk_identity_sign(&a, msg, sizeof(msg), sig), 0);
    assert_int_equal(nk_peer_id_verify(&a.id, msg, sizeof(msg), sig), 0);
    assert_int_equal(nk_peer_id_verify(&b.id, msg, sizeof(msg), sig), NK_ERR_AUTH);
    sig[5] ^= 1;
    assert_int_equal(nk_peer_id_verify(&a.id, msg, sizeof(msg), sig), NK_ERR_AUTH);
    nk_identity_wipe(&a);
    nk_identity_wipe(&b);
}

/* The X25519 forms agree: a DH from either side gives the same secret. */
static void test_x25519_forms(void **state)
{
    (void)state;
    nk_identity a;
    uint8_t sk[32], pk[32], pk2[32];
    assert_int_equal(nk_identity_generate(&a), 0);
    assert_int_equal(nk_identity_x25519(&a, sk, pk), 0);
    assert_int_equal(nk_peer_id_x25519(&a.id, pk2), 0);
    assert_memory_equal(pk, pk2, 32);
    uint8_t derived[32];
    assert_int_equal(crypto_scalarmult_base(derived, sk), 0);
    assert_memory_equal(derived, pk, 32);
    nk_identity_wipe(&a);
}

static void test_save_load_round_trip(void **state)
{
    (void)state;
    char path[512];
    struct stat st;
    nk_identity a, b;
    path_in_tmp(path, sizeof(path), "sub/dir/key");
    assert_int_equal(nk_identity_generate(&a), 0);
    assert_int_equal(nk_identity_save(&a, path), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[512];
    path_in_tmp(dir, sizeof(dir), "sub/dir");
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    assert_int_equal(nk_identity_load(&b, path), 0);
    assert_memory_equal(a.id.key, b.id.key, NK_PEER_ID_SIZE);
    assert_memory_equal(a.secret, b.secret, sizeof(a.secret));

    /* the file is exactly the documented format */
    FILE *f = fopen(path, "rb");
    char text[256];
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_int_equal(n, 14 + 44 + 1);
    assert_memory_equal(text, "natkit-key-v1\n", 14);

    /* no-overwrite refuses and leaves the old key; plain save replaces */
    nk_identity c;
    assert_int_equal(nk_identity_generate(&c), 0);
    assert_int_equal(nk_identity_save_ex(&c, path, NK_IDENTITY_NO_OVERWRITE), NK_ERR_DENIED);
    assert_int_equal(nk_identity_load(&b, path), 0);
    assert_memory_equal(a.id.key, b.id.key, NK_PEER_ID_SIZE);
    assert_int_equal(nk_identity_save(&c, path), 0);
    assert_int_equal(nk_identity_load(&b, path), 0);
    assert_memory_equal(c.id.key, b.id.key, NK_PEER_ID_SIZE);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    nk_identity_wipe(&a);
    nk_identity_wipe(&b);
    nk_identity_wipe(&c);
}

static void expect_load_fails(const char *name, const char *text, size_t len, int err)
{
    char path[512];
    nk_identity id;
    path_in_tmp(path, sizeof(path), name);
    write_file(path, text, len);
    memset(&id, 0xaa, sizeof(id));
    assert_int_equal(nk_identity_load(&id, path), err);
    /* a failed load leaves no half-filled key behind */
    uint8_t zero[sizeof(id)];
    memset(zero, 0, sizeof(zero));
    assert_memory_equal(&id, zero, sizeof(id));
}

static void test_load_corrupt_fails_cleanly(void **state)
{
    (void)state;
    static const char good_seed[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    char text[512];
    nk_identity id;
    char path[512];

    snprintf(text, sizeof(text), "natkit-key-v1\n%s\n", good_seed);
    path_in_tmp(path, sizeof(path), "good");
    write_file(path, text, strlen(text));
    assert_int_equal(nk_identity_load(&id, path), 0);

    expect_load_fails("empty", "", 0, NK_ERR_MALFORMED);
    expect_load_fails("magic", "natkit-key-v2\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", 59, NK_ERR_MALFORMED);
    expect_load_fails("nonl", "natkit-key-v1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 58, NK_ERR_MALFORMED);
    expect_load_fails("short", "natkit-key-v1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh==\n", 59, NK_ERR_MALFORMED);
    expect_load_fails("badchar", "natkit-key-v1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd*h8=\n", 59, NK_ERR_MALFORMED);
    expect_load_fails("trailing", "natkit-key-v1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nx\n", 61,
                      NK_ERR_MALFORMED);
    expect_load_fails("nul", "natkit-key-v1\nAAECAwQFBgcICQoLDA0OD\0AREhMUFRYXGBkaGxwdHh8=\n", 59, NK_ERR_MALFORMED);
    /* a big random blob */
    char big[4096];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7 + 3);
    expect_load_fails("big", big, sizeof(big), NK_ERR_MALFORMED);
    /* missing file */
    path_in_tmp(path, sizeof(path), "does-not-exist");
    assert_int_equal(nk_identity_load(&id, path), NK_ERR_NOT_FOUND);
    nk_identity_wipe(&id);
}

static void test_default_path(void **state)
{
    (void)state;
    char buf[512];
    const char *old_xdg = getenv("XDG_CONFIG_HOME");
    char *saved = old_xdg != NULL ? strdup(old_xdg) : NULL;
    setenv("XDG_CONFIG_HOME", "/x/cfg", 1);
    assert_int_equal(nk_identity_default_path(buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/x/cfg/natkit/key");
    assert_int_equal(nk_identity_default_path(buf, 8), NK_ERR_NOBUFS);
    setenv("XDG_CONFIG_HOME", "relative/ignored", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(nk_identity_default_path(buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/home/u/.config/natkit/key");
    if (saved != NULL) {
        setenv("XDG_CONFIG_HOME", saved, 1);
        free(saved);
    } else {
        unsetenv("XDG_CONFIG_HOME");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_format_known_value),
        cmocka_unit_test(test_parse_rejects_bad_ids),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_x25519_forms),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_load_corrupt_fails_cleanly),
        cmocka_unit_test(test_default_path),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
