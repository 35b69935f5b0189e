/* fuzz_socks4.c - libFuzzer target for proto/socks4 (SOCKS4 / SOCKS4a).
 *
 * Invariants checked (abort() on violation):
 *   - status is NEED_MORE, DONE or INVALID; DONE means 0 < consumed <= len;
 *     *out and *consumed are untouched unless DONE;
 *   - prefix monotonicity: over len = 0, 1, 2, ... the status is NEED_MORE
 *     until it becomes DONE (at len == consumed, then fixed) or INVALID
 *     (then fixed). Each prefix is parsed from the end of an exactly-sized
 *     heap block, so ASan catches any read past len;
 *   - a DONE request re-encoded from its fields (VN CD PORT IP USERID NUL
 *     [HOST NUL]) is byte-identical to the consumed input: nothing was lost,
 *     truncated or invented; USERID and HOST fit their 255-byte bounds;
 *   - socks4_build_reply() writes exactly 8 bytes and echoes an IPv4 bound.
 *
 * Build: clang -O1 -g -fsanitize=fuzzer,address,undefined -Isrc -D_GNU_SOURCE \
 *            fuzz/fuzz_socks4.c src/proto/socks4.c -o fuzz_socks4
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/socks4.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

/* Beyond SOCKS4_REQUEST_MAX (520): longer inputs add only time. */
#define PREFIX_LIMIT 600
#define UNTOUCHED ((size_t)-1)

static void check_done(const struct socks4_request *r, const uint8_t *wire, size_t n)
{
    static const uint8_t zero16[16] = { 0 };
    uint8_t enc[SOCKS4_REQUEST_MAX], rep[8 + 4];
    size_t ulen = strnlen(r->userid, sizeof r->userid), hlen, e = 8;

    CHECK(ulen <= 255);
    enc[0] = SOCKS4_VERSION;
    enc[1] = r->cmd;
    enc[2] = (uint8_t)(r->dst.port >> 8);
    enc[3] = (uint8_t)r->dst.port;
    memcpy(enc + e, r->userid, ulen + 1);
    e += ulen + 1;
    if (r->dst.atyp == SOCKS_ATYP_DOMAIN) {
        hlen = strnlen(r->dst.host, sizeof r->dst.host);
        CHECK(hlen >= 1 && hlen <= 255);
        CHECK(memcmp(r->dst.ip, zero16, 16) == 0);
        CHECK(wire[4] == 0 && wire[5] == 0 && wire[6] == 0 && wire[7] != 0);
        memcpy(enc + 4, wire + 4, 4);           /* 0.0.0.x: x is not kept */
        memcpy(enc + e, r->dst.host, hlen + 1);
        e += hlen + 1;
    } else {
        CHECK(r->dst.atyp == SOCKS_ATYP_IPV4 && r->dst.host[0] == '\0');
        CHECK(memcmp(r->dst.ip + 4, zero16, 12) == 0);
        memcpy(enc + 4, r->dst.ip, 4);
    }
    CHECK(e == n && memcmp(enc, wire, n) == 0);

    memset(rep, 0xCC, sizeof rep);
    CHECK(socks4_build_reply(rep, SOCKS4_REP_GRANTED, &r->dst) == 8);
    CHECK(rep[0] == 0 && rep[1] == SOCKS4_REP_GRANTED && rep[8] == 0xCC);
    if (r->dst.atyp == SOCKS_ATYP_IPV4)
        CHECK(memcmp(rep + 2, wire + 2, 6) == 0);
    else
        CHECK(memcmp(rep + 2, zero16, 6) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = size < PREFIX_LIMIT ? size : PREFIX_LIMIT;
    size_t cap = len ? len : 1, c, seen_c = 0;
    uint8_t *scratch = malloc(cap);
    struct socks4_request r;
    int st, seen = SOCKS_NEED_MORE;

    if (!scratch)
        return 0;
    for (size_t k = 0; k <= len; k++) {
        uint8_t *b = scratch + cap - k;         /* ends where the heap block ends */

        memcpy(b, data, k);
        memset(&r, 0xA5, sizeof r);
        c = UNTOUCHED;
        st = socks4_parse_request(b, k, &r, &c);
        CHECK(st == SOCKS_NEED_MORE || st == SOCKS_DONE || st == SOCKS_INVALID);
        if (st == SOCKS_DONE) {
            CHECK(c > 0 && c <= k);
            check_done(&r, b, c);
        } else {
            CHECK(c == UNTOUCHED && r.cmd == 0xA5 && r.dst.atyp == 0xA5);
        }
        if (seen == SOCKS_NEED_MORE) {
            if (st == SOCKS_DONE)
                CHECK(c == k);
            seen = st, seen_c = c;
        } else {
            CHECK(st == seen);
            if (st == SOCKS_DONE)
                CHECK(c == seen_c);
        }
    }
    free(scratch);
    return 0;
}
