/* socks4.h - SOCKS4 and SOCKS4a request parser and reply builder, sans-I/O.
 *
 * Same conventions as socks5.h: (buf, len) in, enum socks_status out; every
 * proper prefix of a valid request gives NEED_MORE; *out and *consumed are
 * written only on DONE; nothing at or past buf[len] is read. SOCKS4 has no
 * length fields, only NUL-terminated strings, so the bounds are ours: USERID
 * and the 4a HOST are at most 255 bytes each, and a request that has shown
 * 256 bytes of either without the NUL is rejected at once instead of
 * waiting forever.
 */
#ifndef FERRY_PROTO_SOCKS4_H
#define FERRY_PROTO_SOCKS4_H

#include <stddef.h>
#include <stdint.h>

#include "proto/socks_addr.h"

#define SOCKS4_VERSION 4

enum { SOCKS4_CMD_CONNECT = 1, SOCKS4_CMD_BIND = 2 };
/* 0x5C / 0x5D are the identd failures; ferry does not use identd but
 * names them for completeness. */
enum { SOCKS4_REP_GRANTED = 0x5A, SOCKS4_REP_REJECTED = 0x5B,
       SOCKS4_REP_NO_IDENTD = 0x5C, SOCKS4_REP_IDENT_MISMATCH = 0x5D };

/* Longest valid request: fixed 8 bytes + USERID NUL + HOST NUL. */
#define SOCKS4_REQUEST_MAX (8 + 256 + 256)
#define SOCKS4_REPLY_LEN   8

struct socks4_request {
    uint8_t cmd;
    struct socks_addr dst;   /* atyp IPV4, or DOMAIN for 4a (DSTIP 0.0.0.x with x != 0) */
    char userid[256];        /* NUL-terminated */
};

/* VN=4 CD DSTPORT(2) DSTIP(4) USERID NUL [HOST NUL for 4a].
 * INVALID if VN != 4, if USERID reaches 256 bytes without a NUL, or (4a)
 * if HOST is empty or reaches 256 bytes without a NUL; the caller answers
 * socks4_build_reply(SOCKS4_REP_REJECTED) and closes. An unknown CD is not
 * a parse error: DONE with out->cmd as sent, the caller rejects with 0x5B.
 * DSTIP 0.0.0.0 is plain SOCKS4 to 0.0.0.0; refusing it is policy's job. */
int socks4_parse_request(const uint8_t *buf, size_t len, struct socks4_request *out, size_t *consumed);

/* VN=0 CD DSTPORT DSTIP into out; returns 8. bound == NULL, or a bound that
 * is not IPv4 (SOCKS4 cannot express it), is sent as zeros, which clients
 * read as "no bound address to report". */
size_t socks4_build_reply(uint8_t out[8], uint8_t code, const struct socks_addr *bound);

#endif /* FERRY_PROTO_SOCKS4_H */
