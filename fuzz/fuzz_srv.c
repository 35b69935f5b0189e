/* fuzz_srv.c - libFuzzer target for resolver/srv.c (resolver_srv_parse):
 * DNS answers to SRV queries come from the network.
 *
 * Invariants checked (abort() on violation):
 *   - the result is RESOLVER_OK, RESOLVER_NOTFOUND or RESOLVER_FAILED;
 *   - OK means 1 <= n <= RESOLVER_MAX_SRV, every target a non-empty
 *     NUL-terminated name of at most 255 bytes, ttl <= 300; otherwise n == 0;
 *   - the input is parsed from an exactly-sized heap block, so ASan catches
 *     any read past its end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/resolver.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct resolved_srv out;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    int st = resolver_srv_parse(buf, size, &out);
    CHECK(st == RESOLVER_OK || st == RESOLVER_NOTFOUND || st == RESOLVER_FAILED);
    if (st == RESOLVER_OK) {
        CHECK(out.n >= 1 && out.n <= RESOLVER_MAX_SRV && out.ttl <= 300);
        for (size_t i = 0; i < out.n; i++) {
            size_t l = strnlen(out.rec[i].target, sizeof(out.rec[i].target));
            CHECK(l >= 1 && l <= 255);
        }
    } else {
        CHECK(out.n == 0);
    }
    free(buf);
    return 0;
}
