/* socks5_udp.c - see socks5_udp.h. */
#include "proto/socks5_udp.h"

#include <string.h>

#include "proto/socks5.h"

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

enum socks5_udp_verdict socks5_udp_parse(const uint8_t *buf, size_t len, struct socks_addr *dst,
                                         size_t *payload_off)
{
    uint8_t frag = 0;
    size_t n;
    int st = socks5_parse_udp_header(buf, len, dst, &frag, &n);

    if (st == SOCKS_DONE) {
        *payload_off = n;
        return SOCKS5_UDP_OK;
    }
    if (len >= 3 && frag != 0)
        return SOCKS5_UDP_FRAG;
    return st == SOCKS_NEED_MORE ? SOCKS5_UDP_SHORT : SOCKS5_UDP_BAD;
}

size_t socks5_udp_build_header(uint8_t *out, size_t cap, const struct socks_addr *src)
{
    size_t n;

    if (cap < 3 || (src->atyp != SOCKS_ATYP_IPV4 && src->atyp != SOCKS_ATYP_IPV6))
        return 0;
    n = socks5_write_addr(out + 3, cap - 3, src);
    if (n == 0)
        return 0;
    out[0] = out[1] = out[2] = 0;
    return 3 + n;
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

void socks5_udp_peer_init(struct socks5_udp_peer *p, const struct socks_addr *declared, int tcp_family,
                          const uint8_t *tcp_ip)
{
    memset(p, 0, sizeof(*p));
    p->port = declared->port;
    if (declared->atyp == SOCKS_ATYP_IPV4 && !all_zero(declared->ip, 4)) {
        p->family = 4;
        memcpy(p->ip, declared->ip, 4);
    } else if (declared->atyp == SOCKS_ATYP_IPV6 && !all_zero(declared->ip, 16)) {
        p->family = 6;
        memcpy(p->ip, declared->ip, 16);
    } else {
        p->family = tcp_family == 4 ? 4 : 6;
        memcpy(p->ip, tcp_ip, p->family == 4 ? 4 : 16);
    }
    /* An IPv4-mapped IPv6 address is that IPv4 address. */
    if (p->family == 6 && memcmp(p->ip, v4mapped_prefix, 12) == 0) {
        memmove(p->ip, p->ip + 12, 4);
        memset(p->ip + 4, 0, 12);
        p->family = 4;
    }
}

int socks5_udp_peer_accept(struct socks5_udp_peer *p, int family, const uint8_t *ip, uint16_t port)
{
    if (family == 6 && memcmp(ip, v4mapped_prefix, 12) == 0) {
        family = 4;
        ip += 12;
    }
    if (family != p->family || memcmp(ip, p->ip, family == 4 ? 4 : 16) != 0 || port == 0)
        return 0;
    if (p->port == 0)
        p->port = port;
    return port == p->port;
}
