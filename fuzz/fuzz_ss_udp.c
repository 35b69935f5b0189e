/* fuzz_ss_udp.c - libFuzzer target for proto/ss_udp (Shadowsocks AEAD UDP
 * packets).
 *
 * The input is used twice, under a fixed key:
 *   - as a packet from the wire: ss_udp_open() must not read past it (it
 *     is copied to the end of an exactly sized heap block, for ASan); a
 *     packet shorter than salt + tag is SHORT; if it opens, the plaintext
 *     is len - salt - tag bytes, the data offset lies within it, and
 *     sealing that plaintext again with the packet's own salt gives back
 *     the very packet (the nonce is zero: a packet is a function of key,
 *     salt and plaintext);
 *   - as a plaintext: sealed with a salt taken from the input, it must
 *     open to the same bytes (OK, or BAD_ADDR when it does not start with
 *     a whole address), so the address parser sees every input.
 *
 * Build: make fuzz-build (build-fuzz/fuzz/fuzz_ss_udp).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/ss_cipher.h"
#include "proto/ss_udp.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define MAX_IN 2048      /* longer inputs add only time */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t key[SS_KEY_MAX];
    static const struct ss_method *m;
    static uint8_t out[MAX_IN + SS_UDP_OVERHEAD_MAX], again[MAX_IN + SS_UDP_OVERHEAD_MAX];
    struct socks_addr dst;
    size_t plen, off;
    if (!m) {
        m = ss_method_find("chacha20-ietf-poly1305");
        CHECK(m && ss_key_from_password(m, "fuzz", key) == 0);
    }
    if (size > MAX_IN) size = MAX_IN;

    uint8_t *b = malloc(size ? size : 1);
    CHECK(b);
    memcpy(b, data, size);
    enum ss_udp_verdict v = ss_udp_open(m, key, b, size, out, sizeof(out), &plen, &dst, &off);
    CHECK(v == SS_UDP_OK || v == SS_UDP_SHORT || v == SS_UDP_AUTH || v == SS_UDP_BAD_ADDR);
    CHECK((v == SS_UDP_SHORT) == (size < SS_UDP_OVERHEAD(m)));
    if (v == SS_UDP_OK || v == SS_UDP_BAD_ADDR) {
        CHECK(plen == size - SS_UDP_OVERHEAD(m));
        if (v == SS_UDP_OK) CHECK(off <= plen);
        CHECK(ss_udp_seal(m, key, b, out, plen, again, sizeof(again)) == size);
        CHECK(memcmp(again, b, size) == 0);
    }
    free(b);

    uint8_t salt[SS_SALT_MAX] = { 0 };
    memcpy(salt, data, size < m->salt_len ? size : m->salt_len);
    size_t n = ss_udp_seal(m, key, salt, data, size, again, sizeof(again));
    CHECK(n == size + SS_UDP_OVERHEAD(m));
    v = ss_udp_open(m, key, again, n, out, sizeof(out), &plen, &dst, &off);
    CHECK(v == SS_UDP_OK || v == SS_UDP_BAD_ADDR);
    CHECK(plen == size && memcmp(out, data, size) == 0);
    if (v == SS_UDP_OK) CHECK(off <= plen);
    return 0;
}
