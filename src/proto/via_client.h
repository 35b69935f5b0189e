/* via_client.h - the client side of a parent proxy's handshake (--via),
 * sans-I/O: SOCKS5 (RFC 1928, RFC 1929 user/password), SOCKS4a and HTTP
 * CONNECT (nodejs' http-parser reads the response).
 *
 * The caller alternates: via_client_output() gives the next message to
 * send; via_client_input() is handed the parent's answer to it so far,
 * always from its first byte (same start, len only grows while NEED_MORE),
 * and says how it went:
 *   NEED_MORE  a proper prefix of an answer; nothing consumed.
 *   SEND       the answer is complete (*consumed bytes) and another
 *              message follows: call via_client_output() again.
 *   DONE       the tunnel is open; the answer was *consumed bytes, and
 *              whatever follows them is the destination's.
 *   FAIL       the parent refused or broke the protocol: rep, code, why.
 * An answer is never longer than VIA_REPLY_MAX bytes (an HTTP head that
 * reaches it without its blank line fails), so a caller's buffer of that
 * size always holds it. No allocation, no I/O, no logging.
 *
 * The target goes out unresolved when it is a name (SOCKS5 ATYP domain,
 * SOCKS4a, CONNECT host:port): the parent resolves it.
 */
#ifndef FERRY_PROTO_VIA_CLIENT_H
#define FERRY_PROTO_VIA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#include "proto/socks_addr.h"
#include "proto/via_url.h"

#define VIA_REPLY_MAX 8192
/* Longest message via_client_output() writes: an HTTP CONNECT with a
 * 255-byte host twice and Basic credentials of 511 bytes. */
#define VIA_REQUEST_MAX 1536

enum via_status { VIA_NEED_MORE, VIA_SEND, VIA_DONE, VIA_FAIL };

struct via_client {
    /* Private. */
    const struct via_hop *hop;
    struct socks_addr target;
    uint8_t step;
    http_parser hp;
    uint32_t fed;                  /* HTTP: bytes of the head parsed so far */
    uint8_t head_done;
    /* Out, on FAIL. */
    uint8_t rep;                   /* the SOCKS5 reply code that says it best
                                      (1..6: RFC 1928's, passed through) */
    int code;                      /* the parent's own answer: SOCKS5 REP,
                                      SOCKS4 CD, HTTP status; -1 none */
    const char *why;               /* static text for the log */
};

/* hop: a SOCKS5, SOCKS4a or HTTP parent (not ss); it must outlive c.
 * target: what the parent is asked to connect to. */
void via_client_init(struct via_client *c, const struct via_hop *hop, const struct socks_addr *target);

/* The next message into out: its length, or 0 if nothing is to be sent now
 * or cap is below VIA_REQUEST_MAX. Call once per SEND (and once at the
 * start). */
size_t via_client_output(struct via_client *c, uint8_t *out, size_t cap);

enum via_status via_client_input(struct via_client *c, const uint8_t *buf, size_t len, size_t *consumed);

/* The SOCKS5 reply code for an HTTP proxy's status (403 -> 0x02,
 * 502 -> 0x05, 504 -> 0x06, others 0x01). */
uint8_t via_rep_from_http(int status);

#endif /* FERRY_PROTO_VIA_CLIENT_H */
