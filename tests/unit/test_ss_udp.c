/* test_ss_udp.c - unit tests for proto/ss_udp (Shadowsocks AEAD UDP
 * packets): known packets computed independently (Python's cryptography:
 * HKDF-SHA1 and the AEAD, EVP_BytesToKey for the password), round trips,
 * every prefix of a packet, every flipped bit, an authentic packet without
 * an address, and buffers too small.
 *
 * Each prefix is opened from an exactly sized heap block, so ASan flags a
 * read past len.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "crypto/ss_cipher.h"
#include "proto/ss_udp.h"

/* ATYP=1 127.0.0.1 port 53, then "hi". */
static const uint8_t plain_ref[] = { 1, 127, 0, 0, 1, 0, 53, 'h', 'i' };

static const uint8_t chacha_ref[] =
    "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a"
    "\x1b\x1c\x1d\x1e\x1f\x20\x7d\x2a\x79\x37\xc9\xb9\x8e\xde\x9d\x36\x0f\x70\x79\xe3\x5e\x8c\xcf\xec\xbd\x07"
    "\xc0\x7f\x45\x2b\x76";
static const uint8_t aes128_ref[] =
    "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x43\x12\x0a\x81\x85\x48\x3b\x96\xd0\xed"
    "\x27\xd6\x27\x8e\x09\x92\x48\xe9\xfb\xf7\x51\x0e\xbc\xeb\xfc";

struct vec {
    const char *method;
    const uint8_t *pkt;
    size_t len;
};

static const struct vec vecs[] = {
    { "chacha20-ietf-poly1305", chacha_ref, sizeof(chacha_ref) - 1 },
    { "aes-128-gcm", aes128_ref, sizeof(aes128_ref) - 1 },
};

static void key_of(const struct ss_method *m, uint8_t *key)
{
    assert_int_equal(ss_key_from_password(m, "ferry-udp", key), 0);
}

static enum ss_udp_verdict open_exact(const struct ss_method *m, const uint8_t *key, const uint8_t *pkt, size_t len,
                                      uint8_t *out, size_t *plen, struct socks_addr *dst, size_t *off)
{
    uint8_t *b = malloc(len ? len : 1);
    assert_non_null(b);
    memcpy(b, pkt, len);
    enum ss_udp_verdict v = ss_udp_open(m, key, len ? b : b + 1, len, out, 65536, plen, dst, off);
    free(b);
    return v;
}

static void test_seal_matches_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
        const struct ss_method *m = ss_method_find(vecs[i].method);
        uint8_t key[SS_KEY_MAX], salt[SS_SALT_MAX], out[128];
        assert_non_null(m);
        key_of(m, key);
        for (size_t j = 0; j < m->salt_len; j++) salt[j] = (uint8_t)(j + 1);
        size_t n = ss_udp_seal(m, key, salt, plain_ref, sizeof(plain_ref), out, sizeof(out));
        assert_int_equal(n, vecs[i].len);
        assert_int_equal(n, sizeof(plain_ref) + SS_UDP_OVERHEAD(m));
        assert_memory_equal(out, vecs[i].pkt, n);
        /* One byte short of room: nothing. */
        assert_int_equal(ss_udp_seal(m, key, salt, plain_ref, sizeof(plain_ref), out, n - 1), 0);
    }
}

static void test_open_reference_gives_address_and_data(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
        const struct ss_method *m = ss_method_find(vecs[i].method);
        uint8_t key[SS_KEY_MAX], *out = malloc(65536);
        struct socks_addr dst;
        size_t plen = 0, off = 0;
        assert_non_null(out);
        key_of(m, key);
        assert_int_equal(open_exact(m, key, vecs[i].pkt, vecs[i].len, out, &plen, &dst, &off), SS_UDP_OK);
        assert_int_equal(plen, sizeof(plain_ref));
        assert_memory_equal(out, plain_ref, plen);
        assert_int_equal(dst.atyp, SOCKS_ATYP_IPV4);
        assert_int_equal(dst.port, 53);
        assert_int_equal(off, 7);
        assert_memory_equal(out + off, "hi", 2);
        free(out);
    }
}

/* No prefix of a packet opens: shorter than salt + tag is SHORT, the rest
 * fail authentication. */
static void test_every_prefix_is_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
        const struct ss_method *m = ss_method_find(vecs[i].method);
        uint8_t key[SS_KEY_MAX], *out = malloc(65536);
        struct socks_addr dst;
        size_t plen, off;
        assert_non_null(out);
        key_of(m, key);
        for (size_t k = 0; k < vecs[i].len; k++) {
            enum ss_udp_verdict v = open_exact(m, key, vecs[i].pkt, k, out, &plen, &dst, &off);
            assert_int_equal(v, k < SS_UDP_OVERHEAD(m) ? SS_UDP_SHORT : SS_UDP_AUTH);
        }
        free(out);
    }
}

static void test_every_flipped_bit_fails_authentication(void **state)
{
    (void)state;
    const struct vec *v = &vecs[0];
    const struct ss_method *m = ss_method_find(v->method);
    uint8_t key[SS_KEY_MAX], pkt[128], *out = malloc(65536);
    struct socks_addr dst;
    size_t plen, off;
    assert_non_null(out);
    key_of(m, key);
    for (size_t bit = 0; bit < v->len * 8; bit++) {
        memcpy(pkt, v->pkt, v->len);
        pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(open_exact(m, key, pkt, v->len, out, &plen, &dst, &off), SS_UDP_AUTH);
    }
    /* Another key: the same. */
    key[0] ^= 1;
    assert_int_equal(open_exact(m, key, v->pkt, v->len, out, &plen, &dst, &off), SS_UDP_AUTH);
    free(out);
}

/* Authentic, but the plaintext has no whole address: BAD_ADDR, for each
 * cut of the address and an unknown ATYP. */
static void test_authentic_without_address(void **state)
{
    (void)state;
    const struct ss_method *m = ss_method_find("aes-256-gcm");
    uint8_t key[SS_KEY_MAX], salt[SS_SALT_MAX] = { 9 }, pkt[128], *out = malloc(65536);
    static const uint8_t bad_atyp[] = { 2, 1, 2, 3, 4, 0, 80 };
    struct socks_addr dst;
    size_t plen, off;
    assert_non_null(out);
    key_of(m, key);
    for (size_t cut = 0; cut < 7; cut++) {
        size_t n = ss_udp_seal(m, key, salt, plain_ref, cut, pkt, sizeof(pkt));
        assert_int_equal(n, cut + SS_UDP_OVERHEAD(m));
        assert_int_equal(open_exact(m, key, pkt, n, out, &plen, &dst, &off), SS_UDP_BAD_ADDR);
        assert_int_equal(plen, cut);
    }
    size_t n = ss_udp_seal(m, key, salt, bad_atyp, sizeof(bad_atyp), pkt, sizeof(pkt));
    assert_int_equal(open_exact(m, key, pkt, n, out, &plen, &dst, &off), SS_UDP_BAD_ADDR);
    /* An address and no data is a datagram of zero bytes: fine. */
    n = ss_udp_seal(m, key, salt, plain_ref, 7, pkt, sizeof(pkt));
    assert_int_equal(open_exact(m, key, pkt, n, out, &plen, &dst, &off), SS_UDP_OK);
    assert_int_equal(off, plen);
    free(out);
}

/* A datagram as large as UDP carries goes through; cap below the packet's
 * length is refused without reading. */
static void test_large_round_trip_and_small_cap(void **state)
{
    (void)state;
    const struct ss_method *m = ss_method_find("chacha20-ietf-poly1305");
    size_t n = 65507 - SS_UDP_OVERHEAD(m);
    uint8_t key[SS_KEY_MAX], salt[SS_SALT_MAX] = { 7 };
    uint8_t *plain = malloc(n), *pkt = malloc(65507), *out = malloc(65507);
    struct socks_addr dst;
    size_t plen, off;
    assert_non_null(plain);
    assert_non_null(pkt);
    assert_non_null(out);
    key_of(m, key);
    memcpy(plain, plain_ref, 7);
    for (size_t i = 7; i < n; i++) plain[i] = (uint8_t)(i * 31);
    assert_int_equal(ss_udp_seal(m, key, salt, plain, n, pkt, 65507), 65507);
    assert_int_equal(ss_udp_open(m, key, pkt, 65507, out, 65507, &plen, &dst, &off), SS_UDP_OK);
    assert_int_equal(plen, n);
    assert_memory_equal(out, plain, n);
    assert_int_equal(ss_udp_open(m, key, pkt, 65507, out, 65506, &plen, &dst, &off), SS_UDP_SHORT);
    free(plain);
    free(pkt);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_matches_reference),
        cmocka_unit_test(test_open_reference_gives_address_and_data),
        cmocka_unit_test(test_every_prefix_is_refused),
        cmocka_unit_test(test_every_flipped_bit_fails_authentication),
        cmocka_unit_test(test_authentic_without_address),
        cmocka_unit_test(test_large_round_trip_and_small_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
