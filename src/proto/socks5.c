/* socks5.c - SOCKS5 (RFC 1928, RFC 1929) parsers and reply builders,
 * sans-I/O. Also home of socks_addr_format(), shared with SOCKS4.
 *
 * Parsing style (after picohttpparser): each parser checks the fixed bytes
 * it can already see, rejects as early as the bytes allow, and returns
 * NEED_MORE until the whole message is inside len. Results are built in a
 * local and copied out only on DONE, so callers never observe half-parsed
 * state. No byte at or past buf[len] is ever read.
 */
#include "proto/socks5.h"

#include <stdio.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* 1 if any of the first min(avail, want) bytes of p is NUL. Lets parsers
 * reject a NUL inside a length-prefixed string before the string is
 * complete, while never looking past the bytes actually received. */
static int has_nul(const uint8_t *p, size_t avail, size_t want)
{
    return memchr(p, 0, avail < want ? avail : want) != NULL;
}

static int atyp_known(uint8_t atyp)
{
    return atyp == SOCKS_ATYP_IPV4 || atyp == SOCKS_ATYP_DOMAIN || atyp == SOCKS_ATYP_IPV6;
}

int socks5_parse_addr(const uint8_t *buf, size_t len, struct socks_addr *out, size_t *consumed)
{
    struct socks_addr a;
    size_t off, alen, need;

    if (len < 1)
        return SOCKS_NEED_MORE;
    switch (buf[0]) {
    case SOCKS_ATYP_IPV4:
        off = 1, alen = 4;
        break;
    case SOCKS_ATYP_IPV6:
        off = 1, alen = 16;
        break;
    case SOCKS_ATYP_DOMAIN:
        if (len < 2)
            return SOCKS_NEED_MORE;
        off = 2, alen = buf[1];
        /* An empty name cannot be resolved, and a NUL would silently cut
         * the name short when handed on as a C string. */
        if (alen == 0 || has_nul(buf + off, len - off, alen))
            return SOCKS_INVALID;
        break;
    default:
        return SOCKS_INVALID;
    }
    need = off + alen + 2;
    if (len < need)
        return SOCKS_NEED_MORE;

    memset(&a, 0, sizeof a);
    a.atyp = buf[0];
    if (a.atyp == SOCKS_ATYP_DOMAIN)
        memcpy(a.host, buf + off, alen);    /* alen <= 255: NUL stays */
    else
        memcpy(a.ip, buf + off, alen);
    a.port = rd16(buf + off + alen);
    *out = a;
    *consumed = need;
    return SOCKS_DONE;
}

size_t socks5_write_addr(uint8_t *out, size_t cap, const struct socks_addr *a)
{
    size_t alen, off, need;

    switch (a->atyp) {
    case SOCKS_ATYP_IPV4:
        off = 1, alen = 4;
        break;
    case SOCKS_ATYP_IPV6:
        off = 1, alen = 16;
        break;
    case SOCKS_ATYP_DOMAIN:
        /* strnlen bound: a host[] without NUL gives 256, which does not
         * fit the one-byte length and is refused below. */
        off = 2, alen = strnlen(a->host, sizeof a->host);
        if (alen == 0 || alen > 255)
            return 0;
        break;
    default:
        return 0;
    }
    need = off + alen + 2;
    if (cap < need)
        return 0;

    out[0] = a->atyp;
    if (a->atyp == SOCKS_ATYP_DOMAIN) {
        out[1] = (uint8_t)alen;
        memcpy(out + off, a->host, alen);
    } else {
        memcpy(out + off, a->ip, alen);
    }
    wr16(out + off + alen, a->port);
    return need;
}

int socks5_parse_greeting(const uint8_t *buf, size_t len, struct socks5_greeting *out, size_t *consumed)
{
    size_t n;

    if (len < 1)
        return SOCKS_NEED_MORE;
    if (buf[0] != SOCKS5_VERSION)
        return SOCKS_INVALID;
    if (len < 2)
        return SOCKS_NEED_MORE;
    n = buf[1];
    if (n == 0)
        return SOCKS_INVALID;
    if (len < 2 + n)
        return SOCKS_NEED_MORE;

    out->nmethods = (uint8_t)n;
    memcpy(out->methods, buf + 2, n);
    *consumed = 2 + n;
    return SOCKS_DONE;
}

int socks5_greeting_offers(const struct socks5_greeting *g, uint8_t method)
{
    return memchr(g->methods, method, g->nmethods) != NULL;
}

int socks5_parse_userpass(const uint8_t *buf, size_t len, struct socks5_userpass *out, size_t *consumed)
{
    struct socks5_userpass up;
    size_t ulen, plen;

    if (len < 1)
        return SOCKS_NEED_MORE;
    if (buf[0] != SOCKS5_USERPASS_VERSION)
        return SOCKS_INVALID;
    if (len < 2)
        return SOCKS_NEED_MORE;
    ulen = buf[1];
    if (ulen == 0 || has_nul(buf + 2, len - 2, ulen))
        return SOCKS_INVALID;
    if (len < 2 + ulen + 1)
        return SOCKS_NEED_MORE;
    plen = buf[2 + ulen];
    if (has_nul(buf + 3 + ulen, len - 3 - ulen, plen))
        return SOCKS_INVALID;
    if (len < 3 + ulen + plen)
        return SOCKS_NEED_MORE;

    memset(&up, 0, sizeof up);
    memcpy(up.user, buf + 2, ulen);
    memcpy(up.pass, buf + 3 + ulen, plen);
    up.ulen = (uint8_t)ulen;
    up.plen = (uint8_t)plen;
    *out = up;
    *consumed = 3 + ulen + plen;
    return SOCKS_DONE;
}

int socks5_userpass_secret(const uint8_t *buf, size_t len, size_t *off, size_t *n)
{
    if (len < 2 || buf[0] != SOCKS5_USERPASS_VERSION)
        return 0;
    if (len < 3 + (size_t)buf[1])
        return 0;
    *off = 3 + (size_t)buf[1];
    *n = buf[*off - 1];
    return 1;
}

int socks5_parse_request(const uint8_t *buf, size_t len, struct socks5_request *out, size_t *consumed,
                         uint8_t *reply)
{
    struct socks5_request r;
    size_t n;
    int st;

    *reply = SOCKS5_REP_OK;
    if (len < 1)
        return SOCKS_NEED_MORE;
    if (buf[0] != SOCKS5_VERSION) {
        *reply = SOCKS5_REP_FAIL;
        return SOCKS_INVALID;
    }
    if (len < 4)
        return SOCKS_NEED_MORE;
    /* Checked here, not left to socks5_parse_addr(), because an unknown
     * ATYP has its own reply code while every other address error is a
     * general failure. */
    if (!atyp_known(buf[3])) {
        *reply = SOCKS5_REP_ATYP_UNSUPPORTED;
        return SOCKS_INVALID;
    }
    st = socks5_parse_addr(buf + 3, len - 3, &r.dst, &n);
    if (st == SOCKS_INVALID)
        *reply = SOCKS5_REP_FAIL;
    if (st != SOCKS_DONE)
        return st;

    r.cmd = buf[1];     /* any value: CMD_UNSUPPORTED is the caller's answer */
    *out = r;
    *consumed = 3 + n;
    return SOCKS_DONE;
}

int socks5_parse_udp_header(const uint8_t *buf, size_t len, struct socks_addr *out, uint8_t *frag,
                            size_t *consumed)
{
    size_t n;
    int st;

    if (len < 3)
        return SOCKS_NEED_MORE;
    *frag = buf[2];
    if (buf[2] != 0)
        return SOCKS_INVALID;
    st = socks5_parse_addr(buf + 3, len - 3, out, &n);
    if (st == SOCKS_DONE)
        *consumed = 3 + n;
    return st;
}

size_t socks5_build_method_reply(uint8_t out[2], uint8_t method)
{
    out[0] = SOCKS5_VERSION;
    out[1] = method;
    return 2;
}

size_t socks5_build_auth_reply(uint8_t out[2], uint8_t status)
{
    out[0] = SOCKS5_USERPASS_VERSION;
    out[1] = status;
    return 2;
}

size_t socks5_build_reply(uint8_t *out, size_t cap, uint8_t rep, const struct socks_addr *bound)
{
    /* Immutable, so sharing it between threads is safe. */
    static const struct socks_addr any4 = { .atyp = SOCKS_ATYP_IPV4 };
    size_t n;

    if (cap < 3)
        return 0;
    n = socks5_write_addr(out + 3, cap - 3, bound ? bound : &any4);
    if (n == 0)
        return 0;
    out[0] = SOCKS5_VERSION;
    out[1] = rep;
    out[2] = 0;
    return 3 + n;
}
