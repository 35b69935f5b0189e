/* srv.c - the SRV answer parser (pure; see resolver.h, resolver_srv_parse).
 *
 * Written out rather than ares_parse_srv_reply() because that one drops
 * the TTLs, which is what tells discovery when to look again. Every read
 * is checked against the message length; a name is followed through at
 * most 32 compression pointers and 255 bytes of text.
 */
#include "resolver/resolver.h"

#include <string.h>

#define DNS_HDR 12
#define DNS_T_SRV 33
#define DNS_C_IN 1
#define DNS_MAX_JUMPS 32
#define SRV_MAX_TTL_S 300u

static unsigned get16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads the name at *off: its text into out (NULL to skip it; "" for the
 * root), and moves *off past the name's bytes in place. -1 if malformed. */
static int read_name(const uint8_t *buf, size_t len, size_t *off, char *out, size_t outlen)
{
    size_t p = *off, o = 0, end = 0;
    int jumps = 0;
    for (;;) {
        if (p >= len) return -1;
        unsigned l = buf[p];
        if ((l & 0xc0) == 0xc0) {
            if (p + 1 >= len || ++jumps > DNS_MAX_JUMPS) return -1;
            if (!end) end = p + 2;
            p = ((size_t)(l & 0x3f) << 8) | buf[p + 1];
            continue;
        }
        if (l & 0xc0) return -1;                  /* 01 and 10: unused label types */
        if (l == 0) {
            if (!end) end = p + 1;
            break;
        }
        if (p + 1 + l > len) return -1;
        if (out) {
            if (o + l + 2 > outlen || o + l + 1 > 255) return -1;
            if (o) out[o++] = '.';
            memcpy(out + o, buf + p + 1, l);
            o += l;
        }
        p += 1 + l;
    }
    if (out) out[o] = '\0';
    *off = end;
    return 0;
}

static void add_record(struct resolved_srv *out, const uint8_t *rd, const char *target)
{
    if (!target[0]) return;                       /* "." : no service here */
    if (out->n == RESOLVER_MAX_SRV) {
        out->ignored++;
        return;
    }
    struct resolver_srv_rec *r = &out->rec[out->n++];
    r->priority = (uint16_t)get16(rd);
    r->weight = (uint16_t)get16(rd + 2);
    r->port = (uint16_t)get16(rd + 4);
    memcpy(r->target, target, strlen(target) + 1);
}

static int parse(const uint8_t *buf, size_t len, struct resolved_srv *out);

int resolver_srv_parse(const uint8_t *buf, size_t len, struct resolved_srv *out)
{
    int st = parse(buf, len, out);
    if (st != RESOLVER_OK) out->n = out->ignored = 0;   /* no half answers */
    return st;
}

static int parse(const uint8_t *buf, size_t len, struct resolved_srv *out)
{
    size_t off = DNS_HDR;
    memset(out, 0, offsetof(struct resolved_srv, rec));
    out->ttl = SRV_MAX_TTL_S;
    if (!buf || len < DNS_HDR) return RESOLVER_FAILED;
    unsigned rcode = buf[3] & 0x0f, qd = get16(buf + 4), an = get16(buf + 6);
    if (rcode == 3) return RESOLVER_NOTFOUND;
    if (rcode != 0) return RESOLVER_FAILED;
    for (unsigned i = 0; i < qd; i++) {
        if (read_name(buf, len, &off, NULL, 0) < 0 || off + 4 > len) return RESOLVER_FAILED;
        off += 4;
    }
    for (unsigned i = 0; i < an; i++) {
        char target[256];
        if (read_name(buf, len, &off, NULL, 0) < 0 || off + 10 > len) return RESOLVER_FAILED;
        unsigned type = get16(buf + off), cls = get16(buf + off + 2), rdlen = get16(buf + off + 8);
        uint32_t ttl = get32(buf + off + 4);
        off += 10;
        if (off + rdlen > len) return RESOLVER_FAILED;
        if (ttl < out->ttl) out->ttl = ttl;      /* CNAMEs on the way count too */
        if (type == DNS_T_SRV && cls == DNS_C_IN) {
            size_t t = off + 6;
            if (rdlen < 7 || read_name(buf, off + rdlen, &t, target, sizeof(target)) < 0 || t != off + rdlen)
                return RESOLVER_FAILED;
            add_record(out, buf + off, target);
        }
        off += rdlen;
    }
    return out->n ? RESOLVER_OK : RESOLVER_NOTFOUND;
}
