/* test_pcap_tcp.c - unit tests for stage/pcap_tcp: header fields, checksums
 * (checked against a naive big-endian RFC 1071 sum written here), sequence
 * and ack arithmetic over handshake, split data, FIN and RST, IPv4 and IPv6.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "stage/pcap_tcp.h"

#define MAXPKT 64
struct pkt {
    uint8_t b[PTCP_HDR_MAX + PTCP_MAX_PAYLOAD];
    size_t len, hlen;
};
static struct pkt pkts[MAXPKT];
static size_t npkts;

static void collect(void *ctx, const uint8_t *hdr, size_t hlen, const uint8_t *payload, size_t n)
{
    (void)ctx;
    assert_true(npkts < MAXPKT);
    struct pkt *k = &pkts[npkts++];
    memcpy(k->b, hdr, hlen);
    if (n) memcpy(k->b + hlen, payload, n);
    k->len = hlen + n;
    k->hlen = hlen;
    assert_int_equal(ptcp_checksum_fill(k->b, k->len), 0);
}

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* The obvious RFC 1071 sum, one big-endian 16-bit word at a time. */
static uint32_t naive_sum(const uint8_t *p, size_t n, uint32_t acc)
{
    for (size_t i = 0; i + 1 < n; i += 2) acc += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1) acc += (uint32_t)p[n - 1] << 8;
    return acc;
}

static uint16_t naive_fold(uint32_t acc)
{
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

/* A correct checksum makes the sum over pseudo-header + segment 0xffff. */
static void check_sums(const struct pkt *k)
{
    uint32_t acc = 0;
    uint8_t pseudo[40] = { 0 };
    if ((k->b[0] >> 4) == 4) {
        assert_int_equal(naive_fold(naive_sum(k->b, 20, 0)), 0xffff);
        memcpy(pseudo, k->b + 12, 8);
        pseudo[9] = 6;
        pseudo[10] = (uint8_t)((k->len - 20) >> 8);
        pseudo[11] = (uint8_t)(k->len - 20);
        acc = naive_sum(pseudo, 12, 0);
        acc = naive_sum(k->b + 20, k->len - 20, acc);
    } else {
        memcpy(pseudo, k->b + 8, 32);
        pseudo[34] = (uint8_t)((k->len - 40) >> 8);
        pseudo[35] = (uint8_t)(k->len - 40);
        pseudo[39] = 6;
        acc = naive_sum(pseudo, 40, 0);
        acc = naive_sum(k->b + 40, k->len - 40, acc);
    }
    assert_int_equal(naive_fold(acc), 0xffff);
}

static const uint8_t *tcp_of(const struct pkt *k) { return k->b + ((k->b[0] >> 4) == 4 ? 20 : 40); }
static uint32_t seq_of(const struct pkt *k) { return rd32(tcp_of(k) + 4); }
static uint32_t ack_of(const struct pkt *k) { return rd32(tcp_of(k) + 8); }
static uint8_t flags_of(const struct pkt *k) { return tcp_of(k)[13]; }
static uint16_t sport_of(const struct pkt *k) { return rd16(tcp_of(k)); }
static size_t payload_len(const struct pkt *k) { return k->len - k->hlen; }

static void end4(struct ptcp_end *e, const char *ip, uint16_t port)
{
    memset(e, 0, sizeof(*e));
    e->family = 4;
    assert_int_equal(inet_pton(AF_INET, ip, e->ip), 1);
    e->port = port;
}

static void end6(struct ptcp_end *e, const char *ip, uint16_t port)
{
    memset(e, 0, sizeof(*e));
    e->family = 6;
    assert_int_equal(inet_pton(AF_INET6, ip, e->ip), 1);
    e->port = port;
}

static void leg4(struct ptcp_leg *l)
{
    struct ptcp_end a, b;
    end4(&a, "10.1.2.3", 40000);
    end4(&b, "192.168.9.8", 443);
    ptcp_leg_init(l, &a, &b, 1000, 0xfffffff0u);   /* side 1 wraps around */
    npkts = 0;
}

static void test_handshake_v4(void **state)
{
    (void)state;
    struct ptcp_leg l;
    leg4(&l);
    ptcp_handshake(&l, collect, NULL);
    assert_int_equal(npkts, 3);
    const struct pkt *syn = &pkts[0], *synack = &pkts[1], *ack = &pkts[2];
    /* IPv4 header: version, length, DF, TTL, protocol, addresses */
    assert_int_equal(syn->b[0], 0x45);
    assert_int_equal(rd16(syn->b + 2), 40);
    assert_int_equal(rd16(syn->b + 6), 0x4000);
    assert_int_equal(syn->b[9], 6);
    assert_memory_equal(syn->b + 12, "\x0a\x01\x02\x03", 4);
    assert_memory_equal(syn->b + 16, "\xc0\xa8\x09\x08", 4);
    assert_memory_equal(synack->b + 12, "\xc0\xa8\x09\x08", 4);
    assert_int_equal(sport_of(syn), 40000);
    assert_int_equal(sport_of(synack), 443);
    assert_int_equal(rd16(tcp_of(syn) + 2), 443);
    assert_int_equal(tcp_of(syn)[12], 0x50);
    assert_int_equal(rd16(tcp_of(syn) + 14), 65535);

    assert_int_equal(flags_of(syn), PTCP_SYN);
    assert_int_equal(seq_of(syn), 1000);
    assert_int_equal(ack_of(syn), 0);
    assert_int_equal(flags_of(synack), PTCP_SYN | PTCP_ACK);
    assert_int_equal(seq_of(synack), 0xfffffff0u);
    assert_int_equal(ack_of(synack), 1001);
    assert_int_equal(flags_of(ack), PTCP_ACK);
    assert_int_equal(seq_of(ack), 1001);
    assert_int_equal(ack_of(ack), 0xfffffff1u);
    for (size_t i = 0; i < npkts; i++) check_sums(&pkts[i]);
    /* IP ids count up per side */
    assert_int_equal(rd16(ack->b + 4), (uint16_t)(rd16(syn->b + 4) + 1));
}

static void test_data_split_and_acks(void **state)
{
    (void)state;
    struct ptcp_leg l;
    leg4(&l);
    ptcp_handshake(&l, collect, NULL);
    size_t n = 2 * PTCP_MAX_PAYLOAD + 12345;
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (uint8_t)(i * 7 + 3);
    npkts = 0;
    ptcp_data(&l, 1, data, n, collect, NULL);   /* server -> client, across the wrap */
    assert_int_equal(npkts, 6);
    uint32_t seq = 0xfffffff1u;
    size_t off = 0;
    for (size_t i = 0; i < 6; i += 2) {
        const struct pkt *d = &pkts[i], *a = &pkts[i + 1];
        size_t k = payload_len(d);
        assert_int_equal(k, i < 4 ? PTCP_MAX_PAYLOAD : 12345);
        assert_int_equal(rd16(d->b + 2), 40 + k);
        assert_int_equal(flags_of(d), PTCP_ACK | PTCP_PSH);
        assert_int_equal(seq_of(d), seq);
        assert_int_equal(ack_of(d), 1001);
        assert_memory_equal(d->b + d->hlen, data + off, k);
        seq += (uint32_t)k;
        off += k;
        assert_int_equal(sport_of(a), 40000);
        assert_int_equal(flags_of(a), PTCP_ACK);
        assert_int_equal(payload_len(a), 0);
        assert_int_equal(seq_of(a), 1001);
        assert_int_equal(ack_of(a), seq);
        check_sums(d);
        check_sums(a);
    }
    assert_int_equal(l.seq[1], (uint32_t)(0xfffffff1u + n));
    free(data);
}

static void test_odd_payload_checksum(void **state)
{
    (void)state;
    struct ptcp_leg l;
    leg4(&l);
    for (size_t n = 1; n < 40; n++) {
        uint8_t data[40];
        for (size_t i = 0; i < n; i++) data[i] = (uint8_t)(0xf0 + i * 13);
        npkts = 0;
        ptcp_data(&l, 0, data, n, collect, NULL);
        assert_int_equal(npkts, 2);
        check_sums(&pkts[0]);
    }
}

static void test_fin_both_ways_then_nothing(void **state)
{
    (void)state;
    struct ptcp_leg l;
    leg4(&l);
    ptcp_handshake(&l, collect, NULL);
    npkts = 0;
    ptcp_data(&l, 0, (const uint8_t *)"GET", 3, collect, NULL);
    ptcp_fin(&l, 0, collect, NULL);
    ptcp_fin(&l, 0, collect, NULL);                          /* once only */
    ptcp_data(&l, 0, (const uint8_t *)"late", 4, collect, NULL);   /* after FIN: dropped */
    ptcp_data(&l, 1, (const uint8_t *)"OK", 2, collect, NULL);     /* half-close: still allowed */
    ptcp_fin(&l, 1, collect, NULL);
    assert_int_equal(npkts, 8);
    /* [2] FIN from 0 at seq 1004, [3] ACK of it: 1005 */
    assert_int_equal(flags_of(&pkts[2]), PTCP_FIN | PTCP_ACK);
    assert_int_equal(seq_of(&pkts[2]), 1004);
    assert_int_equal(ack_of(&pkts[3]), 1005);
    /* [4] data from 1 acks the FIN */
    assert_int_equal(ack_of(&pkts[4]), 1005);
    assert_int_equal(seq_of(&pkts[6]), 0xfffffff1u + 2);
    assert_int_equal(flags_of(&pkts[6]), PTCP_FIN | PTCP_ACK);
    assert_int_equal(ack_of(&pkts[7]), 0xfffffff1u + 3);
    assert_int_equal(seq_of(&pkts[7]), 1005);
    for (size_t i = 0; i < npkts; i++) check_sums(&pkts[i]);
}

static void test_rst_ends_leg(void **state)
{
    (void)state;
    struct ptcp_leg l;
    leg4(&l);
    ptcp_handshake(&l, collect, NULL);
    npkts = 0;
    ptcp_rst(&l, 1, collect, NULL);
    ptcp_rst(&l, 0, collect, NULL);
    ptcp_data(&l, 0, (const uint8_t *)"x", 1, collect, NULL);
    ptcp_fin(&l, 0, collect, NULL);
    assert_int_equal(npkts, 1);
    assert_int_equal(flags_of(&pkts[0]), PTCP_RST | PTCP_ACK);
    assert_int_equal(seq_of(&pkts[0]), 0xfffffff1u);
    assert_int_equal(ack_of(&pkts[0]), 1001);
}

static void test_ipv6(void **state)
{
    (void)state;
    struct ptcp_leg l;
    struct ptcp_end a, b;
    end6(&a, "2001:db8::1", 5555);
    end6(&b, "::1", 80);
    ptcp_leg_init(&l, &a, &b, 7, 9);
    npkts = 0;
    ptcp_handshake(&l, collect, NULL);
    ptcp_data(&l, 0, (const uint8_t *)"hello", 5, collect, NULL);
    assert_int_equal(npkts, 5);
    const struct pkt *d = &pkts[3];
    assert_int_equal(d->hlen, 60);
    assert_int_equal(d->b[0], 0x60);
    assert_int_equal(rd16(d->b + 4), 25);      /* payload length: TCP header + data */
    assert_int_equal(d->b[6], 6);
    assert_int_equal(d->b[7], 64);
    assert_memory_equal(d->b + 8, a.ip, 16);
    assert_memory_equal(d->b + 24, b.ip, 16);
    assert_int_equal(seq_of(d), 8);
    assert_int_equal(ack_of(d), 10);
    assert_memory_equal(d->b + 60, "hello", 5);
    for (size_t i = 0; i < npkts; i++) check_sums(&pkts[i]);
}

static void test_checksum_fill_rejects_garbage(void **state)
{
    (void)state;
    uint8_t junk[64] = { 0x12 };
    assert_int_equal(ptcp_checksum_fill(junk, sizeof(junk)), -1);
    assert_int_equal(ptcp_checksum_fill(junk, 10), -1);
    /* the helper agrees with the naive sum on an odd-length buffer */
    uint8_t b[7] = { 1, 2, 3, 4, 5, 6, 0xff };
    assert_int_equal(ptcp_csum_fold(b, 7, 0), naive_fold(naive_sum(b, 7, 0)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_v4),
        cmocka_unit_test(test_data_split_and_acks),
        cmocka_unit_test(test_odd_payload_checksum),
        cmocka_unit_test(test_fin_both_ways_then_nothing),
        cmocka_unit_test(test_rst_ends_leg),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_checksum_fill_rejects_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
