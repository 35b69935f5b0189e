/* pcap_tcp.c - see pcap_tcp.h. */
#include "stage/pcap_tcp.h"

#include <string.h>

#define TCP_WINDOW 65535

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* Sums native-order 32-bit words: RFC 1071 shows the ones' complement sum
 * does not depend on byte order, so the folded result is stored back with
 * memcpy, not swapped. Every piece must start at an even packet offset. */
static uint64_t csum_add(uint64_t acc, const uint8_t *p, size_t n)
{
    uint32_t w32;
    uint16_t w16;
    for (; n >= 4; p += 4, n -= 4) {
        memcpy(&w32, p, 4);
        acc += w32;
    }
    if (n >= 2) {
        memcpy(&w16, p, 2);
        acc += w16;
        p += 2;
        n -= 2;
    }
    if (n) {
        uint8_t last[2] = { p[0], 0 };   /* odd length: pad with a zero byte */
        memcpy(&w16, last, 2);
        acc += w16;
    }
    return acc;
}

static uint16_t csum_fold_native(uint64_t acc)
{
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

uint16_t ptcp_csum_fold(const uint8_t *p, size_t n, uint32_t initial)
{
    uint16_t native = csum_fold_native(csum_add(0, p, n));
    uint8_t b[2];
    memcpy(b, &native, 2);
    uint32_t v = ((uint32_t)b[0] << 8 | b[1]) + initial;
    while (v >> 16) v = (v & 0xffff) + (v >> 16);
    return (uint16_t)v;
}

void ptcp_leg_init(struct ptcp_leg *l, const struct ptcp_end *side0, const struct ptcp_end *side1,
                   uint32_t isn0, uint32_t isn1)
{
    memset(l, 0, sizeof(*l));
    l->end[0] = *side0;
    l->end[1] = *side1;
    l->seq[0] = isn0;
    l->seq[1] = isn1;
    l->ip_id[0] = (uint16_t)(isn0 >> 7);
    l->ip_id[1] = (uint16_t)(isn1 >> 7);
}

static size_t ip_header(struct ptcp_leg *l, int from, size_t tcp_len, uint8_t *h)
{
    const struct ptcp_end *src = &l->end[from], *dst = &l->end[!from];
    if (src->family == 6) {
        h[0] = 0x60;                      /* version 6, class and flow 0 */
        h[1] = h[2] = h[3] = 0;
        put16(h + 4, (uint16_t)tcp_len);
        h[6] = 6;                         /* next header: TCP */
        h[7] = 64;
        memcpy(h + 8, src->ip, 16);
        memcpy(h + 24, dst->ip, 16);
        return 40;
    }
    h[0] = 0x45;                          /* version 4, 5 words */
    h[1] = 0;
    put16(h + 2, (uint16_t)(20 + tcp_len));
    put16(h + 4, l->ip_id[from]++);
    put16(h + 6, 0x4000);                 /* don't fragment */
    h[8] = 64;
    h[9] = 6;
    h[10] = h[11] = 0;
    memcpy(h + 12, src->ip, 4);
    memcpy(h + 16, dst->ip, 4);
    uint16_t c = (uint16_t)~csum_fold_native(csum_add(0, h, 20));
    memcpy(h + 10, &c, 2);
    return 20;
}

/* Builds one segment's headers from side `from` into hdr and advances that
 * side's sequence by n (plus one for SYN or FIN). n <= PTCP_MAX_PAYLOAD.
 * Returns the header length (40 for IPv4, 60 for IPv6). */
static size_t ptcp_segment(struct ptcp_leg *l, int from, uint8_t flags, size_t n, uint8_t hdr[PTCP_HDR_MAX])
{
    size_t ip = ip_header(l, from, 20 + n, hdr);
    uint8_t *t = hdr + ip;
    put16(t, l->end[from].port);
    put16(t + 2, l->end[!from].port);
    put32(t + 4, l->seq[from]);
    put32(t + 8, (flags & PTCP_ACK) ? l->seq[!from] : 0);
    t[12] = 5 << 4;                       /* data offset: no options */
    t[13] = flags;
    put16(t + 14, TCP_WINDOW);
    memset(t + 16, 0, 4);                 /* checksum (ptcp_checksum_fill), urgent */
    l->seq[from] += (uint32_t)n + !!(flags & PTCP_SYN) + !!(flags & PTCP_FIN);
    return ip + 20;
}

static void emit_one(struct ptcp_leg *l, int from, uint8_t flags, const uint8_t *p, size_t n,
                     ptcp_emit_fn emit, void *ctx)
{
    uint8_t hdr[PTCP_HDR_MAX];
    size_t hlen = ptcp_segment(l, from, flags, n, hdr);
    emit(ctx, hdr, hlen, p, n);
}

void ptcp_handshake(struct ptcp_leg *l, ptcp_emit_fn emit, void *ctx)
{
    emit_one(l, 0, PTCP_SYN, NULL, 0, emit, ctx);
    emit_one(l, 1, PTCP_SYN | PTCP_ACK, NULL, 0, emit, ctx);
    emit_one(l, 0, PTCP_ACK, NULL, 0, emit, ctx);
}

void ptcp_data(struct ptcp_leg *l, int from, const uint8_t *p, size_t n, ptcp_emit_fn emit, void *ctx)
{
    if (l->reset || l->fin[from]) return;
    while (n) {
        size_t k = n < PTCP_MAX_PAYLOAD ? n : PTCP_MAX_PAYLOAD;
        emit_one(l, from, PTCP_ACK | PTCP_PSH, p, k, emit, ctx);
        emit_one(l, !from, PTCP_ACK, NULL, 0, emit, ctx);
        p += k;
        n -= k;
    }
}

void ptcp_fin(struct ptcp_leg *l, int from, ptcp_emit_fn emit, void *ctx)
{
    if (l->reset || l->fin[from]) return;
    l->fin[from] = 1;
    emit_one(l, from, PTCP_FIN | PTCP_ACK, NULL, 0, emit, ctx);
    emit_one(l, !from, PTCP_ACK, NULL, 0, emit, ctx);
}

void ptcp_rst(struct ptcp_leg *l, int from, ptcp_emit_fn emit, void *ctx)
{
    if (l->reset) return;
    l->reset = 1;
    emit_one(l, from, PTCP_RST | PTCP_ACK, NULL, 0, emit, ctx);
}

int ptcp_checksum_fill(uint8_t *pkt, size_t len)
{
    uint8_t pseudo[40];
    size_t ip, plen;
    uint64_t acc;
    if (len >= 40 && (pkt[0] >> 4) == 6 && pkt[6] == 6) {
        ip = 40;
        memcpy(pseudo, pkt + 8, 32);          /* source, destination */
        put32(pseudo + 32, (uint32_t)(len - ip));
        plen = 40;
        pseudo[36] = pseudo[37] = pseudo[38] = 0;
        pseudo[39] = 6;
    } else if (len >= 40 && pkt[0] == 0x45 && pkt[9] == 6) {
        ip = 20;
        memcpy(pseudo, pkt + 12, 8);
        pseudo[8] = 0;
        pseudo[9] = 6;
        put16(pseudo + 10, (uint16_t)(len - ip));
        plen = 12;
    } else {
        return -1;
    }
    if (len - ip < 20) return -1;
    uint8_t *t = pkt + ip;
    t[16] = t[17] = 0;
    acc = csum_add(0, pseudo, plen);
    acc = csum_add(acc, t, len - ip);
    uint16_t c = (uint16_t)~csum_fold_native(acc);
    memcpy(t + 16, &c, 2);
    return 0;
}
