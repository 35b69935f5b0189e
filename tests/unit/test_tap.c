/* test_tap.c - the tap end to end without sockets: a fake session's events
 * go through tap.c, the spool and the writer thread into real pcap files,
 * which are read back with libpcap and reassembled per TCP direction. The
 * bytes must come back exactly, with valid checksums, across rotations;
 * filters must keep sessions out; the hexdump file must hold the dumps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/options.h"
#include "stage/capture.h"
#include "stage/pcap_tcp.h"
#include "stage/tap.h"

/* One direction of one connection, as read back from the files. */
struct flow {
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    int family;
    uint8_t *data;
    size_t len;
    uint32_t next_seq;
    int syn, fin, rst;
};

#define MAXFLOWS 16
static struct flow flows[MAXFLOWS];
static size_t nflows;
static size_t npackets;

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static struct flow *flow_of(int family, const uint8_t *src, const uint8_t *dst, uint16_t sport, uint16_t dport)
{
    size_t alen = family == 4 ? 4 : 16;
    for (size_t i = 0; i < nflows; i++) {
        struct flow *f = &flows[i];
        if (f->family == family && f->sport == sport && f->dport == dport && !memcmp(f->src, src, alen) &&
            !memcmp(f->dst, dst, alen))
            return f;
    }
    assert_true(nflows < MAXFLOWS);
    struct flow *f = &flows[nflows++];
    memset(f, 0, sizeof(*f));
    f->family = family;
    memcpy(f->src, src, alen);
    memcpy(f->dst, dst, alen);
    f->sport = sport;
    f->dport = dport;
    return f;
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *pkt)
{
    (void)user;
    assert_int_equal(h->caplen, h->len);
    /* the checksum the writer stored is the one we compute again */
    uint8_t *copy = malloc(h->caplen);
    memcpy(copy, pkt, h->caplen);
    int v6 = (pkt[0] >> 4) == 6;
    size_t ip = v6 ? 40 : 20;
    assert_int_equal(ptcp_checksum_fill(copy, h->caplen), 0);
    assert_memory_equal(copy + ip + 16, pkt + ip + 16, 2);
    free(copy);

    const uint8_t *t = pkt + ip;
    struct flow *f = v6 ? flow_of(6, pkt + 8, pkt + 24, rd16(t), rd16(t + 2))
                        : flow_of(4, pkt + 12, pkt + 16, rd16(t), rd16(t + 2));
    uint8_t flags = t[13];
    uint32_t seq = rd32(t + 4);
    size_t n = h->caplen - ip - 20;
    if (flags & PTCP_SYN) {
        f->syn = 1;
        f->next_seq = seq + 1;
    } else {
        assert_int_equal(seq, f->next_seq);   /* no gap, no overlap */
        f->next_seq += (uint32_t)n + !!(flags & PTCP_FIN);
    }
    if (n) {
        f->data = realloc(f->data, f->len + n);
        memcpy(f->data + f->len, t + 20, n);
        f->len += n;
    }
    f->fin |= !!(flags & PTCP_FIN);
    f->rst |= !!(flags & PTCP_RST);
    npackets++;
}

static void read_file(const char *name)
{
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline(name, err);
    assert_non_null(p);
    assert_int_equal(pcap_datalink(p), DLT_RAW);
    assert_int_equal(pcap_loop(p, -1, on_packet, NULL), 0);
    pcap_close(p);
}

static void reset_flows(void)
{
    for (size_t i = 0; i < nflows; i++) free(flows[i].data);
    nflows = 0;
    npackets = 0;
}

static struct flow *find(const char *src, uint16_t sport, uint16_t dport)
{
    struct net_addr a;
    assert_int_equal(net_addr_from_literal(src, sport, &a), 0);
    size_t len;
    const uint8_t *ip = net_addr_ip(&a, &len);
    for (size_t i = 0; i < nflows; i++)
        if (flows[i].sport == sport && flows[i].dport == dport && !memcmp(flows[i].src, ip, len)) return &flows[i];
    fail_msg("no flow from %s:%u to port %u", src, sport, dport);
    return NULL;
}

static void addr(const char *ip, uint16_t port, struct net_addr *a)
{
    assert_int_equal(net_addr_from_literal(ip, port, a), 0);
}

static struct ferry_cfg cfg;
static struct listener_cfg lcfg;
static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/ferry-test-tap-XXXXXX");
    assert_non_null(mkdtemp(dir));
    memset(&cfg, 0, sizeof(cfg));
    memset(&lcfg, 0, sizeof(lcfg));
    snprintf(lcfg.name, sizeof(lcfg.name), "t");
    cfg.listeners = &lcfg;
    cfg.nlisteners = 1;
    reset_flows();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    reset_flows();
    return 0;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
    return b;
}

/* A SOCKS-like session: client request, upstream connect, big answer. */
static void run_session(uint64_t id, const char *cip, const char *sip, uint16_t sport, size_t big)
{
    struct net_addr client, local, ulocal, remote;
    int v6 = strchr(cip, ':') != NULL;
    addr(cip, 40000 + (uint16_t)id, &client);
    addr(v6 ? "::1" : "127.0.0.1", 1080, &local);
    addr(v6 ? "::1" : "127.0.0.1", 50000 + (uint16_t)id, &ulocal);
    addr(sip, sport, &remote);
    uint8_t *body = pattern(big, (unsigned)id);
    struct tap *t = tap_open(&lcfg, id, &client, &local);
    if (!t) {
        free(body);
        return;
    }
    tap_bytes(t, TAP_CLIENT, 1, "\x05\x01\x00", 3);
    tap_bytes(t, TAP_CLIENT, 0, "\x05\x00", 2);
    tap_upstream(t, &ulocal, &remote);
    tap_bytes(t, TAP_UPSTREAM, 0, "GET /\r\n", 7);
    tap_plain(t, 1, "GET /\r\n", 7);
    for (size_t off = 0; off < big; off += 65536) {
        size_t k = big - off < 65536 ? big - off : 65536;
        tap_bytes(t, TAP_UPSTREAM, 1, body + off, k);
        tap_plain(t, 0, body + off, k);
        tap_bytes(t, TAP_CLIENT, 0, body + off, k);
    }
    tap_fin(t, TAP_UPSTREAM, 1);
    tap_fin(t, TAP_CLIENT, 0);
    tap_close(t, 0, 0);
    free(body);
}

/* The hexdump file as a string (at most len - 1 bytes of it). */
static void read_hexdump(char *text, size_t len)
{
    FILE *fp = fopen(lcfg.hexdump_file, "r");
    assert_non_null(fp);
    size_t n = fread(text, 1, len - 1, fp);
    fclose(fp);
    text[n] = '\0';
}

static void start(void)
{
    char err[256] = "";
    int r = tap_global_start(&cfg, err, sizeof(err));
    if (r) fail_msg("tap_global_start: %s", err);
}

static void test_both_legs_byte_exact(void **state)
{
    (void)state;
    snprintf(lcfg.capture_path, sizeof(lcfg.capture_path), "%s/c.pcap", dir);
    start();
    run_session(1, "10.0.0.1", "192.0.2.7", 80, 300000);
    run_session(2, "2001:db8::5", "2001:db8::80", 8080, 1000);
    tap_global_stop(&cfg);
    assert_null(lcfg.capture);
    read_file(lcfg.capture_path);
    assert_int_equal(nflows, 8);
    uint8_t *body = pattern(300000, 1);
    struct flow *f = find("10.0.0.1", 40001, 1080);
    assert_int_equal(f->len, 3);
    assert_memory_equal(f->data, "\x05\x01\x00", 3);
    assert_true(f->syn && f->fin);
    f = find("127.0.0.1", 1080, 40001);
    assert_int_equal(f->len, 2 + 300000);
    assert_memory_equal(f->data + 2, body, 300000);
    f = find("127.0.0.1", 50001, 80);
    assert_int_equal(f->len, 7);
    f = find("192.0.2.7", 80, 50001);
    assert_int_equal(f->len, 300000);
    assert_memory_equal(f->data, body, 300000);
    assert_true(f->syn && f->fin);
    f = find("2001:db8::80", 8080, 50002);
    assert_int_equal(f->family, 6);
    assert_int_equal(f->len, 1000);
    free(body);
}

static void test_rotation_keeps_streams_whole(void **state)
{
    (void)state;
    char name[300];
    snprintf(lcfg.capture_path, sizeof(lcfg.capture_path), "%s/r.pcap", dir);
    lcfg.capture_rotate = 64 << 10;
    start();
    run_session(3, "10.0.0.3", "192.0.2.7", 80, 500000);
    tap_global_stop(&cfg);
    unsigned files = 0;
    for (;; files++) {
        capture_file_name(lcfg.capture_path, files, name, sizeof(name));
        if (access(name, F_OK) != 0) break;
        read_file(name);       /* in order: sequence numbers go on across files */
    }
    assert_true(files >= 8);
    capture_file_name(lcfg.capture_path, 1, name, sizeof(name));
    assert_non_null(strstr(name, "/r.1.pcap"));
    uint8_t *body = pattern(500000, 3);
    struct flow *f = find("192.0.2.7", 80, 50003);
    assert_int_equal(f->len, 500000);
    assert_memory_equal(f->data, body, 500000);
    free(body);
}

static void test_filters(void **state)
{
    (void)state;
    char err[200];
    snprintf(lcfg.capture_path, sizeof(lcfg.capture_path), "%s/f.pcap", dir);
    assert_int_equal(capfilter_parse(&lcfg.capture_filter, "client=10.0.0.0/8,port=443", err, sizeof(err)), 0);
    start();
    struct net_addr c, l;
    addr("11.0.0.1", 1, &c);
    addr("127.0.0.1", 2, &l);
    assert_null(tap_open(&lcfg, 9, &c, &l));          /* client ruled out, no hexdump */
    run_session(4, "10.0.0.4", "192.0.2.7", 80, 100);   /* port 80: buffered, then dropped */
    run_session(5, "10.0.0.5", "192.0.2.7", 443, 100);  /* captured, early client bytes too */
    tap_global_stop(&cfg);
    read_file(lcfg.capture_path);
    assert_int_equal(nflows, 4);
    struct flow *f = find("10.0.0.5", 40005, 1080);
    assert_true(f->syn);
    assert_int_equal(f->len, 3);
}

static void test_hexdump_file(void **state)
{
    (void)state;
    lcfg.hexdump = 1;
    snprintf(lcfg.hexdump_file, sizeof(lcfg.hexdump_file), "%s/h.txt", dir);
    start();
    run_session(6, "10.0.0.6", "192.0.2.7", 80, 20);
    tap_global_stop(&cfg);
    char text[4096];
    read_hexdump(text, sizeof(text));
    assert_non_null(strstr(text, " sess=6 client>upstream len=7 offset=0\n"
                                 "00000000: 4745 5420 2f0d 0a                        GET /..\n"));
    assert_non_null(strstr(text, " sess=6 upstream>client len=20 offset=0\n"));
}

/* An RFC 1929 exchange read in three pieces, the secret marked while held
 * (its span reaching past what has come), and a tail read after the hold
 * (a lingering close): every password byte is a star in the capture and in
 * the dump, nothing else changes, and the order of events is kept. */
static void secret_session(uint64_t id)
{
    static const char msg[] = "\x01\x05" "alice" "\x06" "S3cret";   /* password at 8..13 */
    struct net_addr client, local;
    addr("10.0.0.7", 40000 + (uint16_t)id, &client);
    addr("127.0.0.1", 1080, &local);
    struct tap *t = tap_open(&lcfg, id, &client, &local);
    assert_non_null(t);
    tap_hold(t);
    tap_bytes(t, TAP_CLIENT, 1, msg, 6);
    tap_plain(t, 1, msg, 6);
    tap_release(t);                        /* no PLEN yet: nothing to mark */
    tap_hold(t);
    tap_bytes(t, TAP_CLIENT, 1, msg + 6, 4);
    tap_plain(t, 1, msg + 6, 4);
    tap_secret(t, 8, 6);
    tap_plain(t, 0, "\x01\x00", 2);       /* the reply, held behind the request */
    tap_bytes(t, TAP_CLIENT, 0, "\x01\x00", 2);
    tap_release(t);
    tap_bytes(t, TAP_CLIENT, 1, msg + 10, 4);   /* not held: starred on its own */
    tap_plain(t, 1, msg + 10, 4);
    tap_bytes(t, TAP_CLIENT, 1, "xy", 2);
    tap_plain(t, 1, "xy", 2);
    tap_close(t, 0, 0);
}

static void test_secrets_are_starred(void **state)
{
    (void)state;
    snprintf(lcfg.capture_path, sizeof(lcfg.capture_path), "%s/s.pcap", dir);
    lcfg.hexdump = 1;
    snprintf(lcfg.hexdump_file, sizeof(lcfg.hexdump_file), "%s/s.txt", dir);
    start();
    secret_session(7);
    lcfg.capture_secrets = 1;
    secret_session(8);
    tap_global_stop(&cfg);
    read_file(lcfg.capture_path);
    struct flow *f = find("10.0.0.7", 40007, 1080);
    assert_int_equal(f->len, 16);
    assert_memory_equal(f->data, "\x01\x05" "alice" "\x06" "******" "xy", 16);
    f = find("127.0.0.1", 1080, 40007);
    assert_memory_equal(f->data, "\x01\x00", 2);
    f = find("10.0.0.7", 40008, 1080);
    assert_memory_equal(f->data, "\x01\x05" "alice" "\x06" "S3cret" "xy", 16);
    char text[8192];
    read_hexdump(text, sizeof(text));
    char *s8 = strstr(text, " sess=8 ");
    assert_non_null(s8);
    *s8 = '\0';                            /* text: session 7 only */
    assert_null(strstr(text, "S3"));
    assert_null(strstr(text, "cret"));
    assert_non_null(strstr(text, "len=4 offset=6\n00000006: 6506 2a2a"));
    assert_non_null(strstr(text, "len=4 offset=10\n0000000a: 2a2a 2a2a"));
    /* the reply comes after the request bytes it answers */
    assert_true(strstr(text, "upstream>client") > strstr(text, "offset=6\n"));
    assert_non_null(strstr(s8 + 1, "6506 5333"));   /* --capture-secrets: e, 06, S3 */
}

static void test_same_file_shared_and_rotate_conflict(void **state)
{
    (void)state;
    struct listener_cfg two[2];
    memset(two, 0, sizeof(two));
    snprintf(two[0].name, sizeof(two[0].name), "a");
    snprintf(two[1].name, sizeof(two[1].name), "b");
    snprintf(two[0].capture_path, sizeof(two[0].capture_path), "%s/s.pcap", dir);
    snprintf(two[1].capture_path, sizeof(two[1].capture_path), "%s/s.pcap", dir);
    cfg.listeners = two;
    cfg.nlisteners = 2;
    char err[300] = "";
    assert_int_equal(tap_global_start(&cfg, err, sizeof(err)), 0);
    assert_ptr_equal(two[0].capture, two[1].capture);
    tap_global_stop(&cfg);
    assert_null(two[0].capture);
    assert_null(two[1].capture);
    two[1].capture_rotate = 1 << 20;
    assert_int_equal(tap_global_start(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "different --capture-rotate"));
    assert_null(two[0].capture);
    cfg.listeners = &lcfg;
    cfg.nlisteners = 1;
}

static void test_unwritable_file(void **state)
{
    (void)state;
    char err[300] = "";
    snprintf(lcfg.capture_path, sizeof(lcfg.capture_path), "%s/no/such/dir.pcap", dir);
    assert_int_equal(tap_global_start(&cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no/such/dir.pcap"));
    assert_null(strchr(err, '\n'));
}

static void test_size_parser(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(opt_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(opt_parse_size("1500", &v), 0);
    assert_int_equal(v, 1500);
    assert_int_equal(opt_parse_size("64k", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(opt_parse_size("10M", &v), 0);
    assert_int_equal(v, 10u << 20);
    assert_int_equal(opt_parse_size("2G", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(opt_parse_size("", &v), -1);
    assert_int_equal(opt_parse_size("k", &v), -1);
    assert_int_equal(opt_parse_size("10MB", &v), -1);
    assert_int_equal(opt_parse_size("-1", &v), -1);
    assert_int_equal(opt_parse_size("99999999999999999999", &v), -1);
    /* 2^34 G = 2^64 bytes: refused, not wrapped to 0 ("never rotate"). */
    assert_int_equal(opt_parse_size("17179869184G", &v), -1);
    assert_int_equal(opt_parse_size("1099511627776k", &v), 0);   /* 2^40 k = 2^50 fits */
    assert_int_equal(v, 1ull << 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_both_legs_byte_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_keeps_streams_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hexdump_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_are_starred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_file_shared_and_rotate_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_file, setup, teardown),
        cmocka_unit_test(test_size_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
