/* socks_addr.c - text forms of a SOCKS address (pure). */
#include "proto/socks_addr.h"

#include <arpa/inet.h>
#include <string.h>

/* Copies n bytes of s to out, truncated like snprintf(); outlen > 0. */
static void copy_trunc(char *out, size_t outlen, const char *s, size_t n)
{
    if (n > outlen - 1) n = outlen - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

/* Decimal v (< 100000) at p; returns the digits written. */
static size_t put_uint(char *p, unsigned v)
{
    char d[5];
    size_t n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < sizeof(d));
    for (size_t i = 0; i < n; i++) p[i] = d[n - 1 - i];
    return n;
}

/* IPv4 dotted quad at p (at most 15 bytes); returns its length. Formatted
 * here rather than by inet_ntop(), whose sprintf() was a quarter of a SOCKS
 * session's user-space instructions (the target is formatted for the
 * connect and for the log). */
static size_t put_ipv4(char *p, const uint8_t ip[4])
{
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        if (i) p[n++] = '.';
        n += put_uint(p + n, ip[i]);
    }
    return n;
}

/* The host into out[SOCKS_ADDR_FMT_MAX]; returns its length. */
static size_t host_text(const struct socks_addr *a, char *out)
{
    switch (a->atyp) {
    case SOCKS_ATYP_IPV4:
        return put_ipv4(out, a->ip);
    case SOCKS_ATYP_IPV6:
        return inet_ntop(AF_INET6, a->ip, out, INET6_ADDRSTRLEN) ? strlen(out) : 0;
    case SOCKS_ATYP_DOMAIN: {
        /* Bounded even if host[] lacks its NUL. */
        size_t n = strnlen(a->host, sizeof(a->host));
        memcpy(out, a->host, n);
        return n;
    }
    default:
        out[0] = '?';
        return 1;
    }
}

void socks_addr_host(const struct socks_addr *a, char *out, size_t outlen)
{
    char host[SOCKS_ADDR_FMT_MAX];
    if (outlen == 0) return;
    size_t n = host_text(a, host);
    /* As inet_ntop(): an address that does not fit gives "", not a part. */
    if ((a->atyp == SOCKS_ATYP_IPV4 || a->atyp == SOCKS_ATYP_IPV6) && n >= outlen) n = 0;
    copy_trunc(out, outlen, host, n);
}

void socks_addr_format(const struct socks_addr *a, char *out, size_t outlen)
{
    char buf[SOCKS_ADDR_FMT_MAX + 2];   /* + 2: a domain without its NUL is 256 bytes */
    if (outlen == 0) return;
    if (a->atyp != SOCKS_ATYP_IPV4 && a->atyp != SOCKS_ATYP_IPV6 && a->atyp != SOCKS_ATYP_DOMAIN) {
        copy_trunc(out, outlen, "?", 1);
        return;
    }
    size_t hl = host_text(a, buf + 1), n;
    /* Brackets around anything with a colon (IPv6, or a hostile domain) keep
     * HOST:PORT unambiguous. */
    if (a->atyp == SOCKS_ATYP_IPV6 || memchr(buf + 1, ':', hl)) {
        buf[0] = '[';
        n = hl + 1;
        buf[n++] = ']';
        buf[n++] = ':';
        n += put_uint(buf + n, a->port);
        copy_trunc(out, outlen, buf, n);
    } else {
        n = hl + 1;
        buf[n++] = ':';
        n += put_uint(buf + n, a->port);
        copy_trunc(out, outlen, buf + 1, n - 1);
    }
}
