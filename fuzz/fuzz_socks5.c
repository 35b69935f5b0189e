/* fuzz_socks5.c - libFuzzer target for proto/socks5 and socks_addr_format().
 *
 * Every parser (greeting, userpass, request, address, UDP header) sees the
 * input, and the bytes are also parsed as a session would: greeting, then
 * userpass when it starts with 0x01, then a request, each on what the
 * previous one left over. Invariants checked (abort() on violation):
 *   - status is NEED_MORE, DONE or INVALID; DONE means 0 < consumed <= len;
 *     outputs other than those documented are untouched unless DONE;
 *   - prefix monotonicity: over len = 0, 1, 2, ... the status is NEED_MORE
 *     until it becomes DONE (with one fixed consumed) or INVALID (with one
 *     fixed reply code), and stays so. Each prefix is parsed from the end of
 *     an exactly-sized heap block, so ASan catches any read past len;
 *   - the lengths, strings and codes in a DONE result agree with consumed;
 *   - parse -> socks5_write_addr -> bytes identical to the input, and
 *     parse again -> same address; build_reply -> parses as a request;
 *   - socks_addr_format() always NUL-terminates within outlen.
 *
 * Build: clang -O1 -g -fsanitize=fuzzer,address,undefined -Isrc -D_GNU_SOURCE \
 *            fuzz/fuzz_socks5.c src/proto/socks5.c -o fuzz_socks5
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/socks5.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

/* Beyond the longest SOCKS5 message, so longer inputs add nothing to the
 * prefix walk but time. */
#define PREFIX_LIMIT 600
#define UNTOUCHED ((size_t)-1)

/* One parser behind a common signature. *aux receives the request's reply
 * code (other parsers leave it 0), which must stay fixed once INVALID. */
typedef int parse_fn(const uint8_t *buf, size_t len, size_t *consumed, uint8_t *aux);

/* Set by walk() for the calls that could give the first DONE: the costly
 * result checks run there only, later DONEs must merely agree with it. */
static int deep;

static int same_addr(const struct socks_addr *x, const struct socks_addr *y)
{
    return x->atyp == y->atyp && memcmp(x->ip, y->ip, sizeof x->ip) == 0 &&
           memcmp(x->host, y->host, sizeof x->host) == 0 && x->port == y->port;
}

/* A DONE address is well formed and encodes back to exactly its input. */
static void check_addr(const struct socks_addr *a, const uint8_t *wire, size_t wirelen)
{
    static const uint8_t zero16[16] = { 0 };
    uint8_t enc[SOCKS5_ADDR_MAX];
    struct socks_addr back;
    size_t n, c = UNTOUCHED;
    char s[SOCKS_ADDR_FMT_MAX];
    static const size_t outlens[] = { 1, 2, 7, 20, sizeof s };

    switch (a->atyp) {
    case SOCKS_ATYP_IPV4:
        CHECK(memcmp(a->ip + 4, zero16, 12) == 0);
        /* fall through */
    case SOCKS_ATYP_IPV6:
        CHECK(a->host[0] == '\0');
        break;
    case SOCKS_ATYP_DOMAIN:
        CHECK(strnlen(a->host, sizeof a->host) >= 1 && strnlen(a->host, sizeof a->host) <= 255);
        CHECK(memcmp(a->ip, zero16, 16) == 0);
        break;
    default:
        abort();
    }
    n = socks5_write_addr(enc, sizeof enc, a);
    CHECK(n == wirelen && memcmp(enc, wire, n) == 0);
    CHECK(socks5_write_addr(enc, n - 1, a) == 0);
    CHECK(socks5_parse_addr(enc, n, &back, &c) == SOCKS_DONE && c == n);
    CHECK(same_addr(&back, a));

    for (size_t i = 0; i < sizeof outlens / sizeof outlens[0]; i++) {
        memset(s, 'X', sizeof s);
        socks_addr_format(a, s, outlens[i]);
        CHECK(strnlen(s, outlens[i]) < outlens[i]);
    }
}

static int p_greeting(const uint8_t *b, size_t l, size_t *c, uint8_t *aux)
{
    struct socks5_greeting g;
    int st;

    *aux = 0;
    memset(&g, 0xA5, sizeof g);
    st = socks5_parse_greeting(b, l, &g, c);
    if (st == SOCKS_DONE && deep) {
        CHECK(g.nmethods >= 1 && *c == 2u + g.nmethods);
        for (unsigned i = 0; i < g.nmethods; i++)
            CHECK(socks5_greeting_offers(&g, g.methods[i]) == 1);
    } else if (st != SOCKS_DONE) {
        CHECK(g.nmethods == 0xA5);
    }
    return st;
}

static int p_userpass(const uint8_t *b, size_t l, size_t *c, uint8_t *aux)
{
    struct socks5_userpass up;
    int st;

    *aux = 0;
    memset(&up, 0xA5, sizeof up);
    st = socks5_parse_userpass(b, l, &up, c);
    if (st == SOCKS_DONE && deep) {
        CHECK(up.ulen >= 1 && strlen(up.user) == up.ulen && strlen(up.pass) == up.plen);
        CHECK(*c == 3u + up.ulen + up.plen);
        CHECK(memcmp(up.user, b + 2, up.ulen) == 0 && memcmp(up.pass, b + 3 + up.ulen, up.plen) == 0);
    } else if (st != SOCKS_DONE) {
        CHECK(up.ulen == 0xA5 && up.plen == 0xA5);
    }
    return st;
}

static int p_request(const uint8_t *b, size_t l, size_t *c, uint8_t *aux)
{
    struct socks5_request r;
    uint8_t reply[SOCKS5_REPLY_MAX], rep = 0xEE;
    int st;

    memset(&r, 0xA5, sizeof r);
    st = socks5_parse_request(b, l, &r, c, &rep);
    *aux = rep;
    if (st == SOCKS_INVALID) {
        CHECK(rep == SOCKS5_REP_FAIL || rep == SOCKS5_REP_ATYP_UNSUPPORTED);
        CHECK(r.cmd == 0xA5);
    } else if (st == SOCKS_DONE && deep) {
        size_t n, c2 = UNTOUCHED;
        struct socks5_request r2;

        CHECK(rep == SOCKS5_REP_OK && r.cmd == b[1] && *c > 3);
        check_addr(&r.dst, b + 3, *c - 3);
        /* A reply has the request's shape: it must parse back. */
        n = socks5_build_reply(reply, sizeof reply, r.cmd, &r.dst);
        CHECK(n == *c);
        CHECK(socks5_parse_request(reply, n, &r2, &c2, &rep) == SOCKS_DONE && c2 == n);
        CHECK(r2.cmd == r.cmd && same_addr(&r2.dst, &r.dst));
        CHECK(socks5_build_reply(reply, n - 1, r.cmd, &r.dst) == 0);
    } else if (st == SOCKS_NEED_MORE) {
        CHECK(rep == SOCKS5_REP_OK && r.cmd == 0xA5);
    } else {
        CHECK(rep == SOCKS5_REP_OK);
    }
    return st;
}

static int p_addr(const uint8_t *b, size_t l, size_t *c, uint8_t *aux)
{
    struct socks_addr a;
    int st;

    *aux = 0;
    memset(&a, 0xA5, sizeof a);
    st = socks5_parse_addr(b, l, &a, c);
    if (st == SOCKS_DONE && deep)
        check_addr(&a, b, *c);
    else if (st != SOCKS_DONE)
        CHECK(a.atyp == 0xA5);
    return st;
}

static int p_udp(const uint8_t *b, size_t l, size_t *c, uint8_t *aux)
{
    struct socks_addr a;
    uint8_t frag = 0xEE;
    int st;

    *aux = 0;
    memset(&a, 0xA5, sizeof a);
    st = socks5_parse_udp_header(b, l, &a, &frag, c);
    CHECK(l < 3 ? frag == 0xEE : frag == b[2]);
    if (st == SOCKS_DONE) {
        CHECK(frag == 0 && *c > 3);
        if (deep)
            check_addr(&a, b + 3, *c - 3);
    } else {
        CHECK(a.atyp == 0xA5);
        if (l >= 3 && b[2] != 0)
            CHECK(st == SOCKS_INVALID);
    }
    return st;
}

/* Parses data[0..len) and every shorter prefix, checking the status
 * sequence described at the top. scratch is a heap block of exactly cap >=
 * len bytes; each prefix is copied to its end. Returns the status for the
 * full len and its consumed. */
static int walk(parse_fn *f, const uint8_t *data, size_t len, uint8_t *scratch, size_t cap, size_t *consumed)
{
    int seen = SOCKS_NEED_MORE, st = SOCKS_NEED_MORE;
    size_t seen_c = 0, c;
    uint8_t seen_aux = 0, aux;

    for (size_t k = 0; k <= len; k++) {
        uint8_t *b = scratch + cap - k;     /* ends where the heap block ends */

        memcpy(b, data, k);
        c = UNTOUCHED;
        deep = seen == SOCKS_NEED_MORE;
        st = f(b, k, &c, &aux);
        CHECK(st == SOCKS_NEED_MORE || st == SOCKS_DONE || st == SOCKS_INVALID);
        if (st == SOCKS_DONE)
            CHECK(c > 0 && c <= k);
        else
            CHECK(c == UNTOUCHED);
        if (seen == SOCKS_NEED_MORE) {
            if (st == SOCKS_DONE)
                CHECK(c == k);              /* DONE at the first length that allows it */
            seen = st, seen_c = c, seen_aux = aux;
        } else {
            CHECK(st == seen && aux == seen_aux);
            if (st == SOCKS_DONE)
                CHECK(c == seen_c);
        }
    }
    *consumed = c;
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static parse_fn *const others[] = { p_userpass, p_request, p_addr, p_udp };
    size_t len = size < PREFIX_LIMIT ? size : PREFIX_LIMIT;
    size_t cap = len ? len : 1;
    uint8_t *scratch = malloc(cap);
    size_t c, off;

    if (!scratch)
        return 0;
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        walk(others[i], data, len, scratch, cap, &c);

    /* As a session reads them: greeting [userpass] request, back to back. */
    if (walk(p_greeting, data, len, scratch, cap, &c) == SOCKS_DONE) {
        off = c;
        if (off < len && data[off] == SOCKS5_USERPASS_VERSION) {
            if (walk(p_userpass, data + off, len - off, scratch, cap, &c) != SOCKS_DONE)
                goto out;
            off += c;
        }
        walk(p_request, data + off, len - off, scratch, cap, &c);
    }
out:
    free(scratch);
    return 0;
}
