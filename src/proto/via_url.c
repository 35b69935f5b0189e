/* via_url.c - see via_url.h. */
#include "proto/via_url.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static const struct {
    const char *scheme;
    uint8_t proto;
} schemes[] = {
    { "socks5://", VIA_SOCKS5 }, { "socks5h://", VIA_SOCKS5 }, { "socks4a://", VIA_SOCKS4A },
    { "http://", VIA_HTTP }, { "ss://", VIA_SS },
};

const char *via_proto_name(uint8_t proto)
{
    switch (proto) {
    case VIA_SOCKS5: return "socks5";
    case VIA_SOCKS4A: return "socks4a";
    case VIA_HTTP: return "http";
    case VIA_SS: return "ss";
    default: return "?";
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [p, p + n) into out (NUL-terminated, at most 255 bytes).
 * 0, or -1: a bad escape, a NUL or control byte, or too long. */
static int decode_part(const char *p, size_t n, char out[256])
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval(p[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(p[i + 2]) : -1;
            if (lo < 0) return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f || o == 255) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* SIP002: userinfo is base64url("method:password"), padding optional. */
static int decode_sip002(const char *p, size_t n, char *out, size_t cap)
{
    char b64[700];
    unsigned char raw[600];
    size_t m = 0;
    if (n == 0 || n + 3 >= sizeof(b64)) return -1;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        b64[m++] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    while (m % 4) b64[m++] = '=';
    b64[m] = '\0';
    int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)m);
    if (len < 0) return -1;
    for (size_t i = m; i > 0 && b64[i - 1] == '='; i--) len--;   /* EVP_DecodeBlock counts padding as zeros */
    int r = len > 0 && (size_t)len < cap ? 0 : -1;
    if (r == 0) {
        memcpy(out, raw, (size_t)len);
        out[len] = '\0';
        if (memchr(out, '\0', (size_t)len)) r = -1;
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(b64, sizeof(b64));
    return r;
}

static int fail(char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "%s", why);
    return -1;
}

/* HOST:PORT or [V6]:PORT, nothing after (a single trailing '/' is allowed). */
static int parse_authority(const char *p, struct via_hop *out, char *err, size_t errlen)
{
    const char *colon, *hs = p, *he;
    size_t n = strlen(p);
    if (n && p[n - 1] == '/') n--;
    if (n && *p == '[') {
        const char *rb = memchr(p, ']', n);
        if (!rb || rb + 1 >= p + n || rb[1] != ':') return fail(err, errlen, "expected [IPv6]:PORT after the '@'");
        hs = p + 1;
        he = rb;
        colon = rb + 1;
    } else {
        colon = NULL;
        for (const char *c = p; c < p + n; c++)
            if (*c == ':') colon = c;
        if (!colon) return fail(err, errlen, "missing :PORT (the parent's port has no default)");
        he = colon;
        if (memchr(p, ':', (size_t)(colon - p))) return fail(err, errlen, "an IPv6 parent needs brackets: [::1]:1080");
    }
    if (he == hs) return fail(err, errlen, "missing the parent's host");
    if ((size_t)(he - hs) > 255) return fail(err, errlen, "host name longer than 255 bytes");
    for (const char *c = hs; c < he; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '/' || *c == '@' || *c == '[' || *c == ']')
            return fail(err, errlen, "bad character in the parent's host");
    memcpy(out->host, hs, (size_t)(he - hs));
    out->host[he - hs] = '\0';
    unsigned long port = 0;
    const char *d = colon + 1, *end = p + n;
    if (d == end || end - d > 5) return fail(err, errlen, "expected a port from 1 to 65535");
    for (; d < end; d++) {
        if (*d < '0' || *d > '9') return fail(err, errlen, "expected a port from 1 to 65535");
        port = port * 10 + (unsigned long)(*d - '0');
    }
    if (port == 0 || port > 65535) return fail(err, errlen, "expected a port from 1 to 65535");
    out->port = (uint16_t)port;
    return 0;
}

/* USER[:PASS], METHOD:PASSWORD (ss) or USERID (socks4a). */
static int parse_userinfo(const char *p, size_t n, struct via_hop *out, char *err, size_t errlen)
{
    char sip[600];
    const char *colon = memchr(p, ':', n);
    if (out->proto == VIA_SS && !colon) {
        if (decode_sip002(p, n, sip, sizeof(sip)) < 0 || !(colon = strchr(sip, ':')))
            return fail(err, errlen, "ss:// needs METHOD:PASSWORD@HOST:PORT");
        p = sip;
        n = strlen(sip);
    }
    if (out->proto == VIA_SOCKS4A && colon)
        return fail(err, errlen, "socks4a:// takes a user id, not a password (socks4a://USERID@HOST:PORT)");
    size_t ulen = colon ? (size_t)(colon - p) : n;
    int r = 0;
    if (out->proto == VIA_SS) {
        int ok = ulen > 0 && ulen < sizeof(out->method) && n - ulen - 1 > 0 &&
                 decode_part(p, ulen, out->user) == 0 && strlen(out->user) < sizeof(out->method);
        if (ok) snprintf(out->method, sizeof(out->method), "%s", out->user);
        out->user[0] = '\0';
        if (!ok || decode_part(colon + 1, n - ulen - 1, out->pass) < 0)
            r = fail(err, errlen, "ss:// needs METHOD:PASSWORD@HOST:PORT (a password up to 255 bytes)");
    } else if (ulen == 0 || decode_part(p, ulen, out->user) < 0) {
        r = fail(err, errlen, "bad user name before the '@' (1 to 255 bytes, percent-encoded)");
    } else if (colon && decode_part(colon + 1, n - ulen - 1, out->pass) < 0) {
        r = fail(err, errlen, "bad password before the '@' (up to 255 bytes, percent-encoded)");
    }
    out->has_user = out->proto != VIA_SS && r == 0;
    OPENSSL_cleanse(sip, sizeof(sip));
    return r;
}

int via_url_parse(const char *spec, struct via_hop *out, char *err, size_t errlen)
{
    const char *rest = NULL;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t n = strlen(schemes[i].scheme);
        if (strncasecmp(spec, schemes[i].scheme, n) == 0) {
            out->proto = schemes[i].proto;
            rest = spec + n;
            break;
        }
    }
    if (!rest) return fail(err, errlen, "expected socks5://, socks4a://, http:// or ss:// followed by HOST:PORT");
    const char *at = strrchr(rest, '@');
    if (at && parse_userinfo(rest, (size_t)(at - rest), out, err, errlen) < 0) goto bad;
    if (!at && out->proto == VIA_SS) {
        fail(err, errlen, "ss:// needs METHOD:PASSWORD@HOST:PORT");
        goto bad;
    }
    if (parse_authority(at ? at + 1 : rest, out, err, errlen) < 0) goto bad;
    return 0;
bad:
    OPENSSL_cleanse(out, sizeof(*out));
    return -1;
}

void via_url_format(const struct via_hop *h, char *out, size_t outlen)
{
    int v6 = strchr(h->host, ':') != NULL;
    snprintf(out, outlen, "%s://%s%s%s:%u", via_proto_name(h->proto), v6 ? "[" : "", h->host, v6 ? "]" : "",
             h->port);
}

int via_url_secret(const char *spec, size_t *off, size_t *n)
{
    const char *sep = strstr(spec, "://"), *at, *colon;
    if (!sep) return 0;
    const char *ui = sep + 3;
    if (!(at = strrchr(ui, '@'))) return 0;
    if (strncasecmp(spec, "ss://", 5) == 0) {
        *off = (size_t)(ui - spec);
        *n = (size_t)(at - ui);
        return *n > 0;
    }
    colon = memchr(ui, ':', (size_t)(at - ui));
    if (!colon || colon + 1 == at) return 0;
    *off = (size_t)(colon + 1 - spec);
    *n = (size_t)(at - colon - 1);
    return 1;
}
