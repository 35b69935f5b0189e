/* fuzz_proxy_proto.c - libFuzzer target for proto/proxy_proto (PROXY protocol v1, v2).
 *
 * Invariants checked (abort() on violation):
 *   - DONE means 0 < consumed <= len, within the bounds (PP_V1_MAX for v1,
 *     PP_MAX for v2); *out and *consumed are untouched unless DONE;
 *   - prefix monotonicity: over len = 0, 1, 2, ... the status is NEED_MORE
 *     until it becomes DONE (at len == consumed, then fixed, with the same
 *     header) or INVALID (then fixed, with the same error). Each prefix is
 *     parsed from the end of an exactly-sized heap block, so ASan catches
 *     any read past len;
 *   - a DONE header with addresses, built again with its version's builder
 *     and parsed, gives the same addresses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proxy_proto.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define PREFIX_LIMIT (PP_MAX + 16)

static int same_addr(const struct pp_addr *a, const struct pp_addr *b)
{
    return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, a->family == 4 ? 4 : 16) == 0;
}

static void check_rebuild(const struct pp_header *h)
{
    uint8_t out[PP_BUILD_MAX];
    struct pp_header again;
    size_t consumed, n;
    if (h->local) return;
    n = h->version == 1 ? pp_build_v1(out, &h->src, &h->dst) : pp_build_v2(out, &h->src, &h->dst);
    CHECK(n > 0 && n <= PP_BUILD_MAX);
    CHECK(pp_parse(out, n, &again, &consumed, NULL) == PP_DONE && consumed == n);
    CHECK(same_addr(&again.src, &h->src) && same_addr(&again.dst, &h->dst));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pp_header first, out;
    enum pp_status final = PP_NEED_MORE;
    enum pp_error first_err = PP_ERR_NONE;
    size_t done_at = 0;
    if (size > PREFIX_LIMIT) size = PREFIX_LIMIT;
    for (size_t len = 0; len <= size; len++) {
        uint8_t *b = malloc(len ? len : 1);
        size_t consumed = (size_t)-1;
        enum pp_error err = PP_ERR_NONE;
        CHECK(b);
        if (len) memcpy(b, data, len);
        memset(&out, 0xA5, sizeof(out));
        enum pp_status st = pp_parse(len ? b : b + 1, len, &out, &consumed, &err);
        free(b);
        if (st != PP_DONE) {
            CHECK(consumed == (size_t)-1);
            for (size_t i = 0; i < sizeof(out); i++) CHECK(((uint8_t *)&out)[i] == 0xA5);
        }
        if (final == PP_INVALID) {
            CHECK(st == PP_INVALID && err == first_err);
            continue;
        }
        if (final == PP_DONE) {
            CHECK(st == PP_DONE && consumed == done_at);
            CHECK(same_addr(&out.src, &first.src) && same_addr(&out.dst, &first.dst) && out.local == first.local);
            continue;
        }
        CHECK(st == PP_NEED_MORE || st == PP_DONE || st == PP_INVALID);
        if (st == PP_INVALID) {
            CHECK(err != PP_ERR_NONE);
            first_err = err;
        } else if (st == PP_DONE) {
            CHECK(consumed == len && consumed > 0);
            CHECK(out.version == 1 ? consumed <= PP_V1_MAX : out.version == 2 && consumed <= PP_MAX);
            first = out;
            done_at = consumed;
            check_rebuild(&out);
        }
        final = st;
    }
    return 0;
}
