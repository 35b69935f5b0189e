/* proxy_proto.h - the PROXY protocol (HAProxy's doc/proxy-protocol.txt),
 * versions 1 (text) and 2 (binary), sans-I/O: a header parser and builders.
 *
 * A balancer in front of ferry (HAProxy `send-proxy`, a cloud L4 balancer)
 * puts one header at the start of the connection naming the client it
 * accepted; ferry reads it before anything else and uses that address.
 *
 * pp_parse() tells the versions apart by their first byte ('P' for v1,
 * '\r' for v2's 12-byte signature) and checks every byte as it arrives, so
 * garbage is refused without waiting for more. It reads nothing at or past
 * buf[len]; *out and *consumed are written only on PP_DONE. Every proper
 * prefix of a valid header gives PP_NEED_MORE, and then every byte seen so
 * far belongs to the header (the caller may consume them). The bounds: a v1
 * line is at most PP_V1_MAX bytes with its CRLF, a v2 header's address and
 * TLV part at most PP_V2_MAX_LEN bytes (TLVs are skipped).
 *
 * What the header says: PROXY over TCP/IPv4 or IPv6 gives both addresses.
 * v1 UNKNOWN, v2 LOCAL (a balancer's own health check), and v2 PROXY over
 * UNSPEC, UNIX or DGRAM give `local` = 1: use the connection's own
 * addresses.
 */
#ifndef FERRY_PROTO_PROXY_PROTO_H
#define FERRY_PROTO_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PP_V1_MAX 107                 /* the spec's bound on a v1 line, CRLF included */
#define PP_V2_HDR 16                  /* signature, ver/cmd, family, length */
#define PP_V2_MAX_LEN 1024            /* our bound on what follows the 16 bytes */
#define PP_MAX (PP_V2_HDR + PP_V2_MAX_LEN)
/* Room pp_build_v1() / pp_build_v2() need at most. */
#define PP_BUILD_MAX (PP_V2_HDR + 36 > PP_V1_MAX ? PP_V2_HDR + 36 : PP_V1_MAX)

enum pp_status { PP_NEED_MORE, PP_DONE, PP_INVALID };

/* Why a header was refused (PP_INVALID); pp_error_name() for the log. */
enum pp_error {
    PP_ERR_NONE,
    PP_ERR_SIGNATURE,     /* neither "PROXY " nor v2's signature */
    PP_ERR_TOO_LONG,      /* v1 without CRLF in PP_V1_MAX bytes; v2 length over PP_V2_MAX_LEN */
    PP_ERR_V1_SYNTAX,     /* protocol word, spaces, CRLF */
    PP_ERR_V1_ADDRESS,    /* not an address of the named family */
    PP_ERR_V1_PORT,       /* not a decimal 0..65535 without leading zeros */
    PP_ERR_V2_VERSION,    /* version nibble not 2 */
    PP_ERR_V2_COMMAND,    /* command not LOCAL or PROXY */
    PP_ERR_V2_FAMILY,     /* family or transport nibble out of range */
    PP_ERR_V2_LENGTH,     /* too short for the addresses of its family */
};

/* An address from or for a header: family 4 (ip[0..3]) or 6, port in host order. */
struct pp_addr {
    uint8_t family;
    uint8_t ip[16];
    uint16_t port;
};

struct pp_header {
    uint8_t version;      /* 1 or 2 */
    uint8_t local;        /* 1: no addresses to use (src, dst zeroed) */
    struct pp_addr src, dst;
};

/* See the top of this file. *err (may be NULL) is set on PP_INVALID. */
enum pp_status pp_parse(const uint8_t *buf, size_t len, struct pp_header *out, size_t *consumed,
                        enum pp_error *err);
const char *pp_error_name(enum pp_error e);

/* A header for a connection from src to dst into out (PP_BUILD_MAX bytes);
 * returns its length. Families that differ are both sent as IPv6 (an IPv4
 * address as ::ffff:a.b.c.d); src or dst with family 0 gives v1 "UNKNOWN" /
 * v2 PROXY over UNSPEC (the receiver uses the connection's addresses). */
size_t pp_build_v1(uint8_t *out, const struct pp_addr *src, const struct pp_addr *dst);
size_t pp_build_v2(uint8_t *out, const struct pp_addr *src, const struct pp_addr *dst);

#endif
