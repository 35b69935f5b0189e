/* proxy_proto.c - see proxy_proto.h. */
#include "proto/proxy_proto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
static const char v1_sig[] = "PROXY ";

enum { V2_CMD_LOCAL = 0, V2_CMD_PROXY = 1 };
enum { V2_AF_UNSPEC = 0, V2_AF_INET = 1, V2_AF_INET6 = 2, V2_AF_UNIX = 3 };
enum { V2_TP_UNSPEC = 0, V2_TP_STREAM = 1, V2_TP_DGRAM = 2 };

static const char *const error_names[] = {
    [PP_ERR_NONE] = "none",
    [PP_ERR_SIGNATURE] = "bad_signature",
    [PP_ERR_TOO_LONG] = "too_long",
    [PP_ERR_V1_SYNTAX] = "v1_syntax",
    [PP_ERR_V1_ADDRESS] = "v1_address",
    [PP_ERR_V1_PORT] = "v1_port",
    [PP_ERR_V2_VERSION] = "v2_version",
    [PP_ERR_V2_COMMAND] = "v2_command",
    [PP_ERR_V2_FAMILY] = "v2_family",
    [PP_ERR_V2_LENGTH] = "v2_length",
};

const char *pp_error_name(enum pp_error e)
{
    return (unsigned)e < sizeof(error_names) / sizeof(error_names[0]) ? error_names[e] : "?";
}

static enum pp_status fail(enum pp_error *err, enum pp_error e)
{
    if (err) *err = e;
    return PP_INVALID;
}

/* Whether the len bytes seen agree with the start of the n-byte text want. */
static int agrees(const uint8_t *buf, size_t len, const char *want, size_t n)
{
    return memcmp(buf, want, len < n ? len : n) == 0;
}

/* ---- version 1: "PROXY TCP4 SRC DST SPORT DPORT\r\n" ---- */

/* The protocol word after "PROXY ", so far as it has come: 1 while it may
 * still be TCP4, TCP6 or UNKNOWN. */
static int v1_word_ok(const uint8_t *p, size_t n)
{
    return agrees(p, n, "TCP4 ", 5) || agrees(p, n, "TCP6 ", 5) || agrees(p, n, "UNKNOWN", 7);
}

/* One space-terminated field of the line into out (NUL-terminated). */
static const char *v1_field(const char *p, const char *end, char *out, size_t outlen, char stop)
{
    size_t n = 0;
    while (p < end && *p != stop) {
        if (n + 1 >= outlen) return NULL;
        out[n++] = *p++;
    }
    if (p == end || n == 0) return NULL;
    out[n] = 0;
    return p + 1;
}

static int v1_port(const char *s, uint16_t *port)
{
    unsigned long v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0')) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535) return -1;
    *port = (uint16_t)v;
    return 0;
}

/* The line after "PROXY " up to (not including) its CR. */
static enum pp_error v1_line(const char *p, const char *end, struct pp_header *h)
{
    char src[48], dst[48], sport[8], dport[8];
    if ((size_t)(end - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0) {
        h->local = 1;          /* whatever follows is to be ignored */
        return PP_ERR_NONE;
    }
    if ((size_t)(end - p) < 5 || memcmp(p, "TCP", 3) != 0 || (p[3] != '4' && p[3] != '6') || p[4] != ' ')
        return PP_ERR_V1_SYNTAX;
    int fam = p[3] == '4' ? 4 : 6;
    p += 5;
    if (!(p = v1_field(p, end, src, sizeof(src), ' ')) || !(p = v1_field(p, end, dst, sizeof(dst), ' ')) ||
        !(p = v1_field(p, end, sport, sizeof(sport), ' ')))
        return PP_ERR_V1_SYNTAX;
    size_t rest = (size_t)(end - p);
    if (rest == 0 || rest >= sizeof(dport) || memchr(p, ' ', rest)) return PP_ERR_V1_SYNTAX;
    memcpy(dport, p, rest);
    dport[rest] = 0;
    int af = fam == 4 ? AF_INET : AF_INET6;
    if (inet_pton(af, src, h->src.ip) != 1 || inet_pton(af, dst, h->dst.ip) != 1) return PP_ERR_V1_ADDRESS;
    if (v1_port(sport, &h->src.port) < 0 || v1_port(dport, &h->dst.port) < 0) return PP_ERR_V1_PORT;
    h->src.family = h->dst.family = (uint8_t)fam;
    return PP_ERR_NONE;
}

static enum pp_status parse_v1(const uint8_t *buf, size_t len, struct pp_header *out, size_t *consumed,
                               enum pp_error *err)
{
    const size_t sig = sizeof(v1_sig) - 1;
    if (!agrees(buf, len, v1_sig, sig)) return fail(err, PP_ERR_SIGNATURE);
    if (len > sig && !v1_word_ok(buf + sig, len - sig)) return fail(err, PP_ERR_V1_SYNTAX);
    size_t scan = len < PP_V1_MAX ? len : PP_V1_MAX;
    const uint8_t *lf = memchr(buf, '\n', scan);
    if (!lf) return len >= PP_V1_MAX ? fail(err, PP_ERR_TOO_LONG) : PP_NEED_MORE;
    size_t n = (size_t)(lf - buf) + 1;
    if (n < sig + 2 || lf[-1] != '\r') return fail(err, PP_ERR_V1_SYNTAX);
    struct pp_header h;
    memset(&h, 0, sizeof(h));
    h.version = 1;
    enum pp_error e = v1_line((const char *)buf + sig, (const char *)lf - 1, &h);
    if (e != PP_ERR_NONE) return fail(err, e);
    if (h.local) memset(&h.src, 0, sizeof(h.src));
    *out = h;
    *consumed = n;
    return PP_DONE;
}

/* ---- version 2: signature, ver/cmd, family, length, addresses, TLVs ---- */

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static enum pp_status parse_v2(const uint8_t *buf, size_t len, struct pp_header *out, size_t *consumed,
                               enum pp_error *err)
{
    if (memcmp(buf, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig)) != 0) return fail(err, PP_ERR_SIGNATURE);
    if (len > 12 && buf[12] >> 4 != 2) return fail(err, PP_ERR_V2_VERSION);
    if (len > 12 && (buf[12] & 0xF) > V2_CMD_PROXY) return fail(err, PP_ERR_V2_COMMAND);
    if (len > 13 && (buf[13] >> 4 > V2_AF_UNIX || (buf[13] & 0xF) > V2_TP_DGRAM)) return fail(err, PP_ERR_V2_FAMILY);
    if (len < PP_V2_HDR) return PP_NEED_MORE;
    size_t alen = get16(buf + 14);
    if (alen > PP_V2_MAX_LEN) return fail(err, PP_ERR_TOO_LONG);
    int af = buf[13] >> 4, cmd = buf[12] & 0xF, stream = (buf[13] & 0xF) == V2_TP_STREAM;
    /* Known at once: the length cannot hold the family's addresses. */
    if (cmd == V2_CMD_PROXY && stream && ((af == V2_AF_INET && alen < 12) || (af == V2_AF_INET6 && alen < 36)))
        return fail(err, PP_ERR_V2_LENGTH);
    if (len < PP_V2_HDR + alen) return PP_NEED_MORE;

    struct pp_header h;
    memset(&h, 0, sizeof(h));
    h.version = 2;
    const uint8_t *a = buf + PP_V2_HDR;
    if (cmd == V2_CMD_PROXY && stream && af == V2_AF_INET) {
        h.src.family = h.dst.family = 4;
        memcpy(h.src.ip, a, 4);
        memcpy(h.dst.ip, a + 4, 4);
        h.src.port = get16(a + 8);
        h.dst.port = get16(a + 10);
    } else if (cmd == V2_CMD_PROXY && stream && af == V2_AF_INET6) {
        h.src.family = h.dst.family = 6;
        memcpy(h.src.ip, a, 16);
        memcpy(h.dst.ip, a + 16, 16);
        h.src.port = get16(a + 32);
        h.dst.port = get16(a + 34);
    } else {
        h.local = 1;          /* LOCAL, or nothing we can use: the connection's own */
    }
    *out = h;
    *consumed = PP_V2_HDR + alen;
    return PP_DONE;
}

enum pp_status pp_parse(const uint8_t *buf, size_t len, struct pp_header *out, size_t *consumed,
                        enum pp_error *err)
{
    if (len == 0) return PP_NEED_MORE;
    if (buf[0] == (uint8_t)'P') return parse_v1(buf, len, out, consumed, err);
    if (buf[0] == v2_sig[0]) return parse_v2(buf, len, out, consumed, err);
    return fail(err, PP_ERR_SIGNATURE);
}

/* ---- builders ---- */

/* Both addresses in one family: IPv6 (v4-mapped) when they differ. */
static void same_family(const struct pp_addr *src, const struct pp_addr *dst, struct pp_addr *s, struct pp_addr *d)
{
    *s = *src;
    *d = *dst;
    if (s->family == d->family) return;
    struct pp_addr *v4 = s->family == 4 ? s : d;
    uint8_t ip[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
    memcpy(ip + 12, v4->ip, 4);
    memcpy(v4->ip, ip, 16);
    v4->family = 6;
}

static int known(const struct pp_addr *a) { return a->family == 4 || a->family == 6; }

size_t pp_build_v1(uint8_t *out, const struct pp_addr *src, const struct pp_addr *dst)
{
    struct pp_addr s, d;
    char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
    static const uint8_t unknown[15] = "PROXY UNKNOWN\r\n";   /* no NUL: header bytes */
    if (!known(src) || !known(dst)) {
        memcpy(out, unknown, sizeof(unknown));
        return sizeof(unknown);
    }
    same_family(src, dst, &s, &d);
    int af = s.family == 4 ? AF_INET : AF_INET6;
    inet_ntop(af, s.ip, sa, sizeof(sa));
    inet_ntop(af, d.ip, da, sizeof(da));
    int n = snprintf((char *)out, PP_BUILD_MAX, "PROXY TCP%c %s %s %u %u\r\n", s.family == 4 ? '4' : '6', sa, da,
                     s.port, d.port);
    return (size_t)n;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

size_t pp_build_v2(uint8_t *out, const struct pp_addr *src, const struct pp_addr *dst)
{
    struct pp_addr s, d;
    memcpy(out, v2_sig, sizeof(v2_sig));
    out[12] = 0x20 | V2_CMD_PROXY;
    if (!known(src) || !known(dst)) {
        out[13] = V2_AF_UNSPEC << 4 | V2_TP_UNSPEC;
        put16(out + 14, 0);
        return PP_V2_HDR;
    }
    same_family(src, dst, &s, &d);
    size_t n = s.family == 4 ? 4 : 16;
    out[13] = (uint8_t)((s.family == 4 ? V2_AF_INET : V2_AF_INET6) << 4 | V2_TP_STREAM);
    put16(out + 14, (uint16_t)(2 * n + 4));
    memcpy(out + PP_V2_HDR, s.ip, n);
    memcpy(out + PP_V2_HDR + n, d.ip, n);
    put16(out + PP_V2_HDR + 2 * n, s.port);
    put16(out + PP_V2_HDR + 2 * n + 2, d.port);
    return PP_V2_HDR + 2 * n + 4;
}
