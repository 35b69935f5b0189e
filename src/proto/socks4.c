/* socks4.c - SOCKS4 / SOCKS4a request parser and reply builder, sans-I/O.
 * SOCKS4: https://www.openssh.com/txt/socks4.protocol
 * SOCKS4a: https://www.openssh.com/txt/socks4a.protocol
 */
#include "proto/socks4.h"

#include <string.h>

/* Longest USERID / 4a HOST we accept, NUL excluded: what fits the 256-byte
 * fields of struct socks4_request / struct socks_addr. */
#define SOCKS4_STR_MAX 255

/* Finds the NUL ending a string that starts at p, of which avail bytes have
 * arrived. DONE with *slen = string length (0..255) when the NUL is there;
 * INVALID once 256 non-NUL bytes have arrived (no NUL can make it fit any
 * more); NEED_MORE otherwise. Looks at no more than 256 bytes. */
static int find_cstr(const uint8_t *p, size_t avail, size_t *slen)
{
    size_t scan = avail < SOCKS4_STR_MAX + 1 ? avail : SOCKS4_STR_MAX + 1;
    const uint8_t *nul = memchr(p, 0, scan);

    if (nul) {
        *slen = (size_t)(nul - p);
        return SOCKS_DONE;
    }
    return avail > SOCKS4_STR_MAX ? SOCKS_INVALID : SOCKS_NEED_MORE;
}

int socks4_parse_request(const uint8_t *buf, size_t len, struct socks4_request *out, size_t *consumed)
{
    struct socks4_request r;
    size_t ulen, hlen = 0, off;
    int st, is4a;

    if (len < 1)
        return SOCKS_NEED_MORE;
    if (buf[0] != SOCKS4_VERSION)
        return SOCKS_INVALID;
    if (len < 8)
        return SOCKS_NEED_MORE;

    st = find_cstr(buf + 8, len - 8, &ulen);
    if (st != SOCKS_DONE)
        return st;
    off = 8 + ulen + 1;

    /* SOCKS4a: DSTIP 0.0.0.x, x != 0, means "the host name follows". */
    is4a = buf[4] == 0 && buf[5] == 0 && buf[6] == 0 && buf[7] != 0;
    if (is4a) {
        st = find_cstr(buf + off, len - off, &hlen);
        if (st != SOCKS_DONE)
            return st;
        if (hlen == 0)
            return SOCKS_INVALID;
    }

    memset(&r, 0, sizeof r);
    r.cmd = buf[1];     /* any value: the caller rejects unknown ones */
    r.dst.port = (uint16_t)(buf[2] << 8 | buf[3]);
    memcpy(r.userid, buf + 8, ulen);
    if (is4a) {
        r.dst.atyp = SOCKS_ATYP_DOMAIN;
        memcpy(r.dst.host, buf + off, hlen);
        off += hlen + 1;
    } else {
        r.dst.atyp = SOCKS_ATYP_IPV4;
        memcpy(r.dst.ip, buf + 4, 4);
    }
    *out = r;
    *consumed = off;
    return SOCKS_DONE;
}

size_t socks4_build_reply(uint8_t out[8], uint8_t code, const struct socks_addr *bound)
{
    memset(out, 0, SOCKS4_REPLY_LEN);
    out[1] = code;
    if (bound && bound->atyp == SOCKS_ATYP_IPV4) {
        out[2] = (uint8_t)(bound->port >> 8);
        out[3] = (uint8_t)bound->port;
        memcpy(out + 4, bound->ip, 4);
    }
    return SOCKS4_REPLY_LEN;
}
