/* addr.c - see addr.h. */
#include "net/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int parse_port(const char *s, uint16_t *port, int allow0)
{
    char *end;
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > 65535 || (v == 0 && !allow0)) return -1;
    *port = (uint16_t)v;
    return 0;
}

int host_port_parse(const char *s, struct host_port *out, int allow_port0, char *err, size_t errlen)
{
    const char *host = s, *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "'%.80s': expected [IPv6]:PORT", s);
            return -1;
        }
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            snprintf(err, errlen, "'%.80s': expected HOST:PORT", s);
            return -1;
        }
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen)) {
            snprintf(err, errlen, "'%.80s': IPv6 addresses need brackets: [v6]:PORT", s);
            return -1;
        }
    }
    if (hlen >= sizeof(out->host)) {
        snprintf(err, errlen, "'%.80s': host name longer than 255 bytes", s);
        return -1;
    }
    if (parse_port(colon + 1, &out->port, allow_port0) < 0) {
        snprintf(err, errlen, "'%.80s': bad port (1-65535)", s);
        return -1;
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (s[0] == '[') {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1) {
            snprintf(err, errlen, "'%.80s': bad IPv6 address", s);
            return -1;
        }
    }
    return 0;
}

int net_addr_from_literal(const char *host, uint16_t port, struct net_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (host[0] == '\0' || inet_pton(AF_INET, host, &out->u.in.sin_addr) == 1) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = htons(port);
        out->len = sizeof(out->u.in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) == 1) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof(out->u.in6);
        return 0;
    }
    return -1;
}

void net_addr_from_ip(struct net_addr *out, int family, const uint8_t *ip, uint16_t port)
{
    memset(out, 0, sizeof(*out));
    if (family == 4) {
        out->u.in.sin_family = AF_INET;
        memcpy(&out->u.in.sin_addr, ip, 4);
        out->u.in.sin_port = htons(port);
        out->len = sizeof(out->u.in);
    } else {
        out->u.in6.sin6_family = AF_INET6;
        memcpy(&out->u.in6.sin6_addr, ip, 16);
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof(out->u.in6);
    }
}

int net_addr_parse(const char *s, struct net_addr *out, char *err, size_t errlen)
{
    struct host_port hp;
    if (host_port_parse(s, &hp, 1, err, errlen) < 0) return -1;
    /* Typed by habit (toxiproxy's examples use it). Fixed to 127.0.0.1, not
     * looked up: a listener must not move with /etc/hosts, and a name that
     * also means ::1 would be two sockets behind one address. */
    if (strcasecmp(hp.host, "localhost") == 0) snprintf(hp.host, sizeof(hp.host), "127.0.0.1");
    if (net_addr_from_literal(hp.host, hp.port, out) < 0) {
        snprintf(err, errlen, "'%.80s': host must be an IP address or localhost here", s);
        return -1;
    }
    return 0;
}

void net_addr_from_sockaddr(struct net_addr *out, const struct sockaddr *sa, socklen_t len)
{
    memset(out, 0, sizeof(*out));
    if (len > sizeof(out->u)) len = sizeof(out->u);
    memcpy(&out->u, sa, len);
    out->len = len;
}

char *net_addr_format(const struct net_addr *a, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in.sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, ntohs(a->u.in.sin_port));
    } else if (a->u.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, ntohs(a->u.in6.sin6_port));
    } else {
        snprintf(out, outlen, "-");
    }
    return out;
}

void net_addr_set_port(struct net_addr *a, uint16_t port)
{
    if (a->u.sa.sa_family == AF_INET) a->u.in.sin_port = htons(port);
    else if (a->u.sa.sa_family == AF_INET6) a->u.in6.sin6_port = htons(port);
}

uint16_t net_addr_port(const struct net_addr *a)
{
    return ntohs(a->u.sa.sa_family == AF_INET6 ? a->u.in6.sin6_port : a->u.in.sin_port);
}

const uint8_t *net_addr_ip(const struct net_addr *a, size_t *len)
{
    if (a->u.sa.sa_family == AF_INET) {
        *len = 4;
        return (const uint8_t *)&a->u.in.sin_addr;
    }
    *len = 16;
    return a->u.in6.sin6_addr.s6_addr;
}

int net_addr_is_loopback(const struct net_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return (ntohl(a->u.in.sin_addr.s_addr) >> 24) == 127;
    if (a->u.sa.sa_family == AF_INET6) {
        const struct in6_addr *p = &a->u.in6.sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(p)) return 1;
        return IN6_IS_ADDR_V4MAPPED(p) && p->s6_addr[12] == 127;
    }
    return 0;
}

int net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
    size_t la, lb;
    const uint8_t *ia = net_addr_ip(a, &la), *ib = net_addr_ip(b, &lb);
    return la == lb && memcmp(ia, ib, la) == 0 && net_addr_port(a) == net_addr_port(b);
}

static int is_wildcard(const struct net_addr *a)
{
    size_t n;
    const uint8_t *ip = net_addr_ip(a, &n);
    for (size_t i = 0; i < n; i++)
        if (ip[i]) return 0;
    return 1;
}

int net_addr_overlap(const struct net_addr *a, const struct net_addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family || net_addr_port(a) == 0 || net_addr_port(a) != net_addr_port(b))
        return 0;
    return net_addr_equal(a, b) || is_wildcard(a) || is_wildcard(b);
}

void host_port_format(const char *host, uint16_t port, char *out, size_t len)
{
    snprintf(out, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}
