/* ss_udp.c - see ss_udp.h. */
#include "proto/ss_udp.h"

#include <string.h>

#include "proto/socks5.h"

size_t ss_udp_seal(const struct ss_method *m, const uint8_t *master, const uint8_t *salt, const uint8_t *p,
                   size_t n, uint8_t *out, size_t cap)
{
    struct ss_aead a;
    if (cap < n + SS_UDP_OVERHEAD(m) || ss_aead_init(&a, m, master, salt) < 0) return 0;
    memcpy(out, salt, m->salt_len);
    int r = ss_aead_seal(&a, out + m->salt_len, p, n);
    ss_aead_free(&a);
    return r < 0 ? 0 : n + SS_UDP_OVERHEAD(m);
}

enum ss_udp_verdict ss_udp_open(const struct ss_method *m, const uint8_t *master, const uint8_t *pkt, size_t len,
                                uint8_t *out, size_t cap, size_t *plain_len, struct socks_addr *dst,
                                size_t *data_off)
{
    struct ss_aead a;
    if (len < SS_UDP_OVERHEAD(m) || cap < len) return SS_UDP_SHORT;
    if (ss_aead_init(&a, m, master, pkt) < 0) return SS_UDP_AUTH;
    size_t n = len - m->salt_len;
    int r = ss_aead_open(&a, out, pkt + m->salt_len, n);
    ss_aead_free(&a);
    if (r < 0) return SS_UDP_AUTH;
    *plain_len = n - m->tag_len;
    if (socks5_parse_addr(out, *plain_len, dst, data_off) != SOCKS_DONE) return SS_UDP_BAD_ADDR;
    return SS_UDP_OK;
}
