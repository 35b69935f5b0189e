/* socks_addr.c - text forms of a SOCKS address (pure). */
#include "proto/socks_addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

void socks_addr_host(const struct socks_addr *a, char *out, size_t outlen)
{
    if (outlen == 0) return;
    out[0] = '\0';
    switch (a->atyp) {
    case SOCKS_ATYP_IPV4:
        inet_ntop(AF_INET, a->ip, out, (socklen_t)outlen);
        break;
    case SOCKS_ATYP_IPV6:
        inet_ntop(AF_INET6, a->ip, out, (socklen_t)outlen);
        break;
    case SOCKS_ATYP_DOMAIN:
        /* Bounded even if host[] lacks its NUL. */
        snprintf(out, outlen, "%.*s", (int)strnlen(a->host, sizeof(a->host)), a->host);
        break;
    default:
        snprintf(out, outlen, "?");
        break;
    }
}

void socks_addr_format(const struct socks_addr *a, char *out, size_t outlen)
{
    char host[sizeof(a->host) + 1];   /* + 1: host[] may lack its NUL */
    if (outlen == 0) return;
    socks_addr_host(a, host, sizeof(host));
    /* Brackets around anything with a colon (IPv6, or a hostile domain) keep
     * HOST:PORT unambiguous. */
    if (a->atyp == SOCKS_ATYP_IPV6 || strchr(host, ':'))
        snprintf(out, outlen, "[%s]:%u", host, a->port);
    else if (a->atyp == SOCKS_ATYP_IPV4 || a->atyp == SOCKS_ATYP_DOMAIN)
        snprintf(out, outlen, "%s:%u", host, a->port);
    else
        snprintf(out, outlen, "?");
}
