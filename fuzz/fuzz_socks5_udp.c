/* fuzz_socks5_udp.c - libFuzzer target for proto/socks5_udp (UDP
 * ASSOCIATE datagrams).
 *
 * The input is one client datagram. Invariants checked (abort() on
 * violation):
 *   - the verdict is one of the four; OK means the payload offset lies
 *     within the datagram and past a whole header, and the outputs are
 *     untouched otherwise;
 *   - prefixes: every prefix shorter than an OK header is SHORT or, once
 *     the FRAG byte is non-zero, FRAG; from the header's length on, every
 *     prefix is OK with the same offset (the payload is opaque). Each prefix
 *     is parsed from the end of an exactly sized heap block (ASan);
 *   - an IP destination rebuilt with socks5_udp_build_header() gives back
 *     the input header with RSV zeroed, which parses to the same address;
 *   - the sender check: the declared peer taken from the input accepts its
 *     own address, and once a port is fixed no other port gets in.
 *
 * Build: make fuzz-build (build-fuzz/fuzz/fuzz_socks5_udp).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/socks5_udp.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define UNTOUCHED ((size_t)-1)
/* Past the longest header (262 bytes): longer prefixes add only time. */
#define PREFIX_LIMIT 300

static enum socks5_udp_verdict parse_tail(const uint8_t *data, size_t k, uint8_t *scratch, size_t cap,
                                          struct socks_addr *a, size_t *off)
{
    uint8_t *b = scratch + cap - k;
    enum socks5_udp_verdict v;

    memcpy(b, data, k);
    memset(a, 0xA5, sizeof(*a));
    *off = UNTOUCHED;
    v = socks5_udp_parse(b, k, a, off);
    CHECK(v == SOCKS5_UDP_OK || v == SOCKS5_UDP_FRAG || v == SOCKS5_UDP_SHORT || v == SOCKS5_UDP_BAD);
    if (v == SOCKS5_UDP_OK)
        CHECK(*off > 3 && *off <= k && *off <= 3 + 1 + 1 + 255 + 2);
    else
        CHECK(*off == UNTOUCHED && a->atyp == 0xA5);
    if (v == SOCKS5_UDP_FRAG)
        CHECK(k >= 3 && data[2] != 0);
    return v;
}

static void check_rebuild(const uint8_t *data, const struct socks_addr *a, size_t off)
{
    uint8_t out[SOCKS5_UDP_REPLY_HDR_MAX];
    struct socks_addr back;
    size_t n, boff;

    n = socks5_udp_build_header(out, sizeof out, a);
    if (a->atyp == SOCKS_ATYP_DOMAIN) {
        CHECK(n == 0);
        return;
    }
    CHECK(n == off);
    CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0);
    CHECK(memcmp(out + 3, data + 3, n - 3) == 0);
    CHECK(socks5_udp_parse(out, n, &back, &boff) == SOCKS5_UDP_OK && boff == n);
    CHECK(back.atyp == a->atyp && memcmp(back.ip, a->ip, sizeof back.ip) == 0 && back.port == a->port);
    CHECK(socks5_udp_build_header(out, n - 1, a) == 0);
}

/* The declared address is the parsed destination, the TCP client's IP
 * the 16 bytes after the header (or zeros). */
static void check_peer(const struct socks_addr *declared, const uint8_t *data, size_t size, size_t off)
{
    struct socks5_udp_peer p;
    uint8_t tcp[16] = { 0 };
    int fam = size > off && (data[off] & 1) ? 6 : 4;
    uint16_t port;

    if (size > off + 1)
        memcpy(tcp, data + off + 1, size - off - 1 < 16 ? size - off - 1 : 16);
    socks5_udp_peer_init(&p, declared, fam, tcp);
    CHECK(p.family == 4 || p.family == 6);
    port = p.port ? p.port : 1234;
    CHECK(socks5_udp_peer_accept(&p, p.family, p.ip, port) == 1);
    CHECK(p.port == port);
    CHECK(socks5_udp_peer_accept(&p, p.family, p.ip, (uint16_t)(port + 1)) == 0);
    CHECK(socks5_udp_peer_accept(&p, p.family, p.ip, 0) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = size < PREFIX_LIMIT ? size : PREFIX_LIMIT;
    size_t cap = len ? len : 1, off, first_off = 0;
    uint8_t *scratch = malloc(cap);
    struct socks_addr a, first;
    int seen_ok = 0, seen_bad = 0;

    if (!scratch)
        return 0;
    for (size_t k = 0; k <= len; k++) {
        enum socks5_udp_verdict v = parse_tail(data, k, scratch, cap, &a, &off);
        if (seen_ok) {
            CHECK(v == SOCKS5_UDP_OK && off == first_off);
        } else if (v == SOCKS5_UDP_OK) {
            CHECK(off == k && !seen_bad);   /* OK at the first length that allows it */
            seen_ok = 1, first_off = off, first = a;
        } else if (v == SOCKS5_UDP_BAD || v == SOCKS5_UDP_FRAG) {
            seen_bad = 1;                   /* and stays a drop */
        } else {
            CHECK(!seen_bad);
        }
    }
    free(scratch);
    if (seen_ok) {
        /* The whole input, not only its first PREFIX_LIMIT bytes. */
        CHECK(socks5_udp_parse(data, size, &a, &off) == SOCKS5_UDP_OK && off == first_off);
        check_rebuild(data, &first, first_off);
        check_peer(&first, data, size, first_off);
    }
    return 0;
}
