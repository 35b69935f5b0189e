/* socks_addr.h - address type and parse status shared by the SOCKS4/4a and
 * SOCKS5 parsers (and by the Shadowsocks framing, which reuses the SOCKS5
 * ATYP ADDR PORT encoding).
 *
 * Everything under proto/ is sans-I/O: pure functions over (buf, len), no
 * sockets, no logging, no allocation. Hence no <netinet/in.h> here: the
 * address is kept as raw network-order bytes and the caller converts it to a
 * sockaddr in net/.
 */
#ifndef FERRY_PROTO_SOCKS_ADDR_H
#define FERRY_PROTO_SOCKS_ADDR_H

#include <stddef.h>
#include <stdint.h>

/* ATYP values of RFC 1928; SOCKS4 requests are mapped onto IPV4 / DOMAIN. */
enum { SOCKS_ATYP_IPV4 = 1, SOCKS_ATYP_DOMAIN = 3, SOCKS_ATYP_IPV6 = 4 };

/* A parsed destination or bound address. Parsers zero the struct before
 * filling it, so unused bytes (ip[] of a DOMAIN, host[] of an IP) are zero.
 * Compare two addresses field by field, not with memcmp(): there is a
 * padding byte before port, and struct assignment need not copy it. */
struct socks_addr {
    uint8_t  atyp;          /* SOCKS_ATYP_* */
    uint8_t  ip[16];        /* network order; 4 bytes used for IPv4 */
    char     host[256];     /* NUL-terminated, for DOMAIN (1..255 bytes) */
    uint16_t port;          /* host order */
};

/* Longest string socks_addr_format() can produce, NUL included:
 * "[" + 255-byte host + "]:" + "65535" + NUL. */
#define SOCKS_ADDR_FMT_MAX (1 + 255 + 2 + 5 + 1)

/* Formats "1.2.3.4:80", "[::1]:80" (RFC 5952 text, "::ffff:1.2.3.4" for
 * IPv4-mapped) or "name:80" into out. A DOMAIN host that contains ':' is
 * bracketed too, so the result always splits unambiguously at its last ':'.
 * An unknown atyp formats as "?". The output is truncated like snprintf() and
 * is always NUL-terminated when outlen > 0; nothing is written when
 * outlen == 0. For logs and error messages; never parses anything. */
void socks_addr_format(const struct socks_addr *a, char *out, size_t outlen);
/* The host alone: "1.2.3.4", "::1" (no brackets) or the domain name; what a
 * resolver or connect() wants. Always NUL-terminated (outlen > 0). */
void socks_addr_host(const struct socks_addr *a, char *out, size_t outlen);

/* Result of every parser in proto/socks4.h and proto/socks5.h.
 *   NEED_MORE: buf is a proper prefix of a message that may still be valid;
 *              call again with more bytes (same start, larger len).
 *   DONE:      one whole message parsed; *consumed > 0 is its length. Bytes
 *              after it (pipelined data) are left for the caller.
 *   INVALID:   no continuation can make this valid; answer and close.
 * Parsers never read at or past buf[len]. */
enum socks_status { SOCKS_NEED_MORE = 0, SOCKS_DONE = 1, SOCKS_INVALID = -1 };

#endif /* FERRY_PROTO_SOCKS_ADDR_H */
