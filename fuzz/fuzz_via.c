/* fuzz_via.c - libFuzzer target for proto/via_client (a parent proxy's
 * answers) and proto/via_url (--via URLs).
 *
 * The first byte picks the parent (SOCKS5, SOCKS5 with a password,
 * SOCKS4a, HTTP CONNECT) and the target's kind; the rest is everything the
 * parent sends. The driver plays the session's part: it sends what the
 * client asks, then hands it the answer a byte more at a time. Invariants
 * (abort() on violation):
 *   - each answer is NEED_MORE on every proper prefix, then final: SEND
 *     or DONE with 0 < consumed <= len and consumed <= VIA_REPLY_MAX, or
 *     FAIL with a reason and a reply code 1..6; nothing is consumed while
 *     NEED_MORE; after FAIL every later call fails too;
 *   - a message to send is never longer than VIA_REQUEST_MAX and never
 *     empty while the handshake goes on; each prefix is handed over in an
 *     exactly-sized heap block, so ASan catches any read past len;
 *   - the same bytes as a URL: a parsed one has a proto, a host and a
 *     port; a refused one leaves the hop zeroed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/via_client.h"
#include "proto/via_url.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void check_url(const uint8_t *data, size_t size)
{
    char spec[600], err[200];
    struct via_hop h;
    size_t n = size < sizeof(spec) - 1 ? size : sizeof(spec) - 1;
    memcpy(spec, data, n);
    spec[n] = '\0';
    if (via_url_parse(spec, &h, err, sizeof(err)) == 0) {
        CHECK(h.proto >= VIA_SOCKS5 && h.proto <= VIA_SS && h.host[0] && h.port);
        char out[300];
        via_url_format(&h, out, sizeof(out));
    } else {
        static const struct via_hop zero;
        CHECK(memcmp(&h, &zero, sizeof(h)) == 0 && err[0]);
    }
    size_t off, sn;
    if (via_url_secret(spec, &off, &sn)) CHECK(off + sn <= n);
}

/* One answer from data[0, size): 0 with *used when final (SEND/DONE), -1 FAIL
 * or the data ran out first. */
static int one_answer(struct via_client *c, const uint8_t *data, size_t size, size_t *used, enum via_status *st)
{
    size_t limit = size < VIA_REPLY_MAX + 8 ? size : VIA_REPLY_MAX + 8;
    for (size_t len = 0; len <= limit; len++) {
        uint8_t *b = malloc(len ? len : 1);
        size_t consumed = (size_t)-1;
        CHECK(b);
        if (len) memcpy(b, data, len);
        *st = via_client_input(c, len ? b : b + 1, len, &consumed);
        free(b);
        if (*st == VIA_NEED_MORE) {
            CHECK(consumed == (size_t)-1 && len < VIA_REPLY_MAX);
            continue;
        }
        if (*st == VIA_FAIL) {
            CHECK(c->why && c->rep >= 1 && c->rep <= 6);
            CHECK(via_client_input(c, data, size, &consumed) == VIA_FAIL);
            return -1;
        }
        CHECK(*st == VIA_SEND || *st == VIA_DONE);
        CHECK(consumed > 0 && consumed <= len && consumed <= VIA_REPLY_MAX);
        *used = consumed;
        return 0;
    }
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const urls[] = { "socks5://p:1", "socks5://user:pass@p:1", "socks4a://id@p:1",
                                        "http://user:pass@p:1" };
    uint8_t out[VIA_REQUEST_MAX];
    struct via_hop h;
    struct via_client c;
    struct socks_addr t;
    char err[100];
    check_url(data, size);
    if (size < 1) return 0;
    CHECK(via_url_parse(urls[data[0] & 3], &h, err, sizeof(err)) == 0);
    memset(&t, 0, sizeof(t));
    t.port = 443;
    switch ((data[0] >> 2) % 3) {
    case 0: t.atyp = SOCKS_ATYP_IPV4; t.ip[0] = 10; break;
    case 1: t.atyp = SOCKS_ATYP_IPV6; t.ip[15] = 1; break;
    default: t.atyp = SOCKS_ATYP_DOMAIN; memcpy(t.host, "example.com", 12); break;
    }
    data++;
    size--;
    via_client_init(&c, &h, &t);
    for (int round = 0; round < 4; round++) {
        size_t n = via_client_output(&c, out, sizeof(out));
        CHECK(n > 0 && n <= VIA_REQUEST_MAX);
        size_t used = 0;
        enum via_status st;
        if (one_answer(&c, data, size, &used, &st) < 0 || st == VIA_DONE) return 0;
        data += used;
        size -= used;
    }
    abort();      /* no handshake has more than three answers */
}
