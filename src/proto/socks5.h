/* socks5.h - SOCKS5 wire format (RFC 1928) and username/password
 * sub-negotiation (RFC 1929), sans-I/O.
 *
 * Parsers take (buf, len) and return enum socks_status (socks_addr.h). They
 * are restartable only from the start: call again with the same buffer start
 * and a larger len after NEED_MORE. Every proper prefix of a valid message
 * gives NEED_MORE; an error is reported as soon as the bytes seen so far
 * cannot start a valid message. All lengths come from single wire bytes, so
 * every message is bounded (see the *_MAX constants, which size the
 * caller's handshake buffer).
 *
 * Output contract for all parsers: all pointer arguments must be non-NULL;
 * *out and *consumed are written only on DONE (the caller's copies are
 * untouched on NEED_MORE and INVALID), unless a function says otherwise.
 *
 * Builders write into a caller buffer and return the number of bytes
 * written, or 0 when cap is too small or the address cannot be encoded.
 */
#ifndef FERRY_PROTO_SOCKS5_H
#define FERRY_PROTO_SOCKS5_H

#include <stddef.h>
#include <stdint.h>

#include "proto/socks_addr.h"

#define SOCKS5_VERSION 5
/* Version byte of the RFC 1929 sub-negotiation (not 5). */
#define SOCKS5_USERPASS_VERSION 1

enum { SOCKS5_METHOD_NOAUTH = 0x00, SOCKS5_METHOD_USERPASS = 0x02, SOCKS5_METHOD_NONE = 0xFF };
enum { SOCKS5_CMD_CONNECT = 1, SOCKS5_CMD_BIND = 2, SOCKS5_CMD_UDP = 3 };
enum { SOCKS5_REP_OK = 0, SOCKS5_REP_FAIL = 1, SOCKS5_REP_NOT_ALLOWED = 2, SOCKS5_REP_NET_UNREACH = 3,
       SOCKS5_REP_HOST_UNREACH = 4, SOCKS5_REP_REFUSED = 5, SOCKS5_REP_TTL = 6,
       SOCKS5_REP_CMD_UNSUPPORTED = 7, SOCKS5_REP_ATYP_UNSUPPORTED = 8 };
/* RFC 1929 STATUS: 0 is success, anything else is failure (client closes). */
enum { SOCKS5_AUTH_OK = 0x00, SOCKS5_AUTH_FAIL = 0x01 };

/* Largest messages, in bytes (all length fields are one byte). */
#define SOCKS5_ADDR_MAX        (1 + 1 + 255 + 2)       /* ATYP LEN DOMAIN PORT */
#define SOCKS5_GREETING_MAX    (2 + 255)               /* VER NMETHODS METHODS */
#define SOCKS5_USERPASS_MAX    (1 + 1 + 255 + 1 + 255) /* VER ULEN UNAME PLEN PASSWD */
#define SOCKS5_REQUEST_MAX     (3 + SOCKS5_ADDR_MAX)   /* VER CMD RSV + addr */
#define SOCKS5_REPLY_MAX       (3 + SOCKS5_ADDR_MAX)   /* VER REP RSV + addr */
#define SOCKS5_UDP_HEADER_MAX  (3 + SOCKS5_ADDR_MAX)   /* RSV RSV FRAG + addr */

struct socks5_greeting { uint8_t nmethods; uint8_t methods[255]; };

/* Client greeting: VER NMETHODS METHODS[NMETHODS].
 * INVALID if VER != 5 or NMETHODS == 0 (the client then offers nothing we
 * could pick; RFC 1928 gives NMETHODS no zero case). Unknown method codes are
 * kept as they are; choosing among them is the caller's job. */
int socks5_parse_greeting(const uint8_t *buf, size_t len, struct socks5_greeting *out, size_t *consumed);
/* 1 if the greeting lists `method`, else 0. */
int socks5_greeting_offers(const struct socks5_greeting *g, uint8_t method);

struct socks5_userpass { char user[256]; char pass[256]; uint8_t ulen, plen; };

/* RFC 1929 request: VER=0x01 ULEN UNAME PLEN PASSWD.
 * INVALID if VER != 1, ULEN == 0, or UNAME/PASSWD contains a NUL byte (the
 * strings are handed on NUL-terminated; an embedded NUL would let
 * "alice\0junk" compare equal to "alice"). PLEN == 0 is accepted although
 * RFC 1929 says 1..255: the framing stays unambiguous, clients such as curl
 * send it for an empty password, and whether an empty password is good
 * enough is the authenticator's decision, not the parser's. On any INVALID
 * the caller answers socks5_build_auth_reply(SOCKS5_AUTH_FAIL) and closes. */
int socks5_parse_userpass(const uint8_t *buf, size_t len, struct socks5_userpass *out, size_t *consumed);

/* Where PASSWD lies in an RFC 1929 message that starts at buf, as far as
 * its first len bytes tell, so that recorders (capture, hexdump) can hide
 * it: 1 with *off and *n (the span may reach past len: the rest of the
 * password is still to come), 0 while PLEN has not arrived or VER is not 1.
 * Answers for malformed messages too (a NUL in UNAME): the bytes at PLEN's
 * place still say how many follow. */
int socks5_userpass_secret(const uint8_t *buf, size_t len, size_t *off, size_t *n);

struct socks5_request { uint8_t cmd; struct socks_addr dst; };

/* Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
 * *reply is always written: SOCKS5_REP_OK on NEED_MORE and DONE; on INVALID
 * the exact REP code to answer with before closing:
 *   VER != 5                         -> SOCKS5_REP_FAIL
 *   unknown ATYP                     -> SOCKS5_REP_ATYP_UNSUPPORTED
 *   domain length 0 or a NUL in it   -> SOCKS5_REP_FAIL (the ATYP is
 *     supported, the address is malformed: 0x01 "general failure" is the
 *     only code RFC 1928 has for that)
 * An unknown CMD is not a parse error: the whole message is parsed and DONE
 * returned with out->cmd as sent, so the caller can consume it and answer
 * SOCKS5_REP_CMD_UNSUPPORTED. RSV is ignored: it carries no meaning and
 * rejecting it would only break sloppy clients. */
int socks5_parse_request(const uint8_t *buf, size_t len, struct socks5_request *out, size_t *consumed,
                         uint8_t *reply);

/* Address alone: ATYP ADDR PORT (IPv4 7 bytes, IPv6 19, domain 4 + n).
 * INVALID for an unknown ATYP, a zero-length domain, or a domain containing
 * NUL. Shared with the Shadowsocks framing, which uses the same encoding. */
int socks5_parse_addr(const uint8_t *buf, size_t len, struct socks_addr *out, size_t *consumed);

/* Encodes a as ATYP ADDR PORT. Returns bytes written, or 0 if cap is too
 * small or a cannot be encoded (unknown atyp; DOMAIN host empty or not
 * NUL-terminated within host[]). Nothing is written when 0 is returned. */
size_t socks5_write_addr(uint8_t *out, size_t cap, const struct socks_addr *a);

/* Method selection reply: 05 METHOD. Returns 2. */
size_t socks5_build_method_reply(uint8_t out[2], uint8_t method);
/* RFC 1929 status reply: 01 STATUS. Returns 2. */
size_t socks5_build_auth_reply(uint8_t out[2], uint8_t status);
/* Reply: VER REP RSV ATYP BND.ADDR BND.PORT. bound == NULL means
 * 0.0.0.0:0 (what RFC 1928 clients expect on failures). Returns 10 (IPv4),
 * 22 (IPv6) or 7 + strlen(host) (domain); 0 if cap is too small or bound
 * cannot be encoded. */
size_t socks5_build_reply(uint8_t *out, size_t cap, uint8_t rep, const struct socks_addr *bound);

/* UDP ASSOCIATE datagram header: RSV(2) FRAG ATYP DST.ADDR DST.PORT; the
 * payload follows at buf + *consumed. A datagram arrives whole, so
 * NEED_MORE here means "truncated": drop it.
 * *frag is written as soon as the FRAG byte is inside len, also on INVALID,
 * so the caller can tell a dropped fragment from a malformed header.
 * INVALID when FRAG != 0: we do not implement fragment reassembly (RFC 1928
 * makes it optional, and real clients do not fragment), so a fragment is
 * dropped like the RFC's "MUST drop" for unsupported implementations.
 * RSV is ignored, as in requests. */
int socks5_parse_udp_header(const uint8_t *buf, size_t len, struct socks_addr *out, uint8_t *frag,
                            size_t *consumed);

#endif /* FERRY_PROTO_SOCKS5_H */
