/* front.h - protocol front-ends: what runs on a client before relaying.
 *
 * A front-end (SOCKS, Shadowsocks) reads the client's handshake,
 * names a target, and answers the client once the upstream is connected or
 * has failed. It never touches sockets: it parses bytes the session hands
 * it and queues replies with sess_reply(). The session owns all I/O.
 */
#ifndef FERRY_FRONT_H
#define FERRY_FRONT_H

#include <stddef.h>
#include <stdint.h>

#include "relay/session-t.h"

enum front_result {
    FRONT_AGAIN,       /* need more bytes */
    FRONT_CONNECT,     /* target set with sess_set_target(); connect now */
    FRONT_FAIL,        /* reply (if any) queued; close after it is written */
    FRONT_SILENT_FAIL, /* say nothing, close at a random later time (anti-probing) */
    FRONT_HOLD,        /* the connection is now a control channel (SOCKS5 UDP ASSOCIATE):
                          the session writes the queued reply, discards what the client
                          sends and ends at its EOF or error; the front-end's own
                          objects (relay/udp_assoc.c) may end it sooner with sess_close() */
};

struct front_ops {
    const char *name;
    /* Allocates s->front_state. Returns 0 or -1 (out of memory). */
    int (*init)(struct session *s);
    /* Client bytes in [buf, buf+len). Sets *consumed. May queue replies. */
    enum front_result (*on_data)(struct session *s, const uint8_t *buf, size_t len, size_t *consumed);
    /* Optional: right after FRONT_CONNECT (handshake bytes consumed), install
     * codecs or push early data. 0, or -1 to close. */
    int (*attach)(struct session *s);
    /* Upstream connected; `bound` is its local address (zero unless
     * needs_bound says so: reading it costs a getsockname per connection).
     * Queue the success reply. */
    void (*on_connected)(struct session *s, const struct net_addr *bound);
    /* Optional: whether on_connected needs `bound` for this session. */
    int (*needs_bound)(const struct session *s);
    /* Optional, BIND (s->bind): listening at `bound` for the peer; queue the
     * first reply. on_connected then gives the second, naming the peer
     * (s->upstream). */
    void (*on_listening)(struct session *s, const struct net_addr *bound);
    /* Connecting failed for `why`. Queue the failure reply (if the protocol has one). */
    void (*on_failed)(struct session *s, enum sess_fail why);
    /* Extra "key=value ..." for the session log line (no secrets). */
    void (*log_fields)(const struct session *s, char *out, size_t outlen);
    /* Optional: the user the client authenticated as, or NULL (filters'
     * s.user). */
    const char *(*user)(const struct session *s);
    void (*free)(struct session *s);
    /* 1: a client is judged only by what it sends (Shadowsocks), so every
     * ending before authentication must look alike to a prober: at the
     * first byte the handshake deadline is drawn at random from [T/2, T],
     * and a silent failure keeps that deadline instead of drawing its own. */
    int hides_endings;
};

extern const struct front_ops front_socks;
struct socks_addr;
/* An IP socket address in SOCKS form (ATYP IPv4/IPv6, address, port). */
void front_socks_addr(const struct net_addr *a, struct socks_addr *out);
/* t as ATYP ADDR PORT (an IP literal as IPv4/IPv6, else a domain), the
 * header Shadowsocks and mux-local --socks put before a stream's data.
 * Bytes written, 0 if it does not fit in cap. */
size_t front_socks_encode_target(const struct sess_target *t, uint8_t *out, size_t cap);
extern const struct front_ops front_ss_server;
/* mux-server --dynamic: the stream starts with a SOCKS5 address. */
extern const struct front_ops front_mux_dynamic;

/* The listener's users (--user, --users-file): 1 if user:pass is one of
 * them. Constant time in the password, and walks every user. */
int front_user_check(const struct session *s, const char *user, size_t ulen, const char *pass, size_t plen);

/* HTTP proxying on the SOCKS port (front_http.c). */
extern const struct front_ops front_http;
/* 1 if a client's first byte starts a method the HTTP front serves. */
int front_http_first_byte(uint8_t b);
/* From the SOCKS front's on_data, before it consumed anything: frees the
 * SOCKS state, makes front_http the session's front-end and hands it the
 * same bytes. */
enum front_result front_http_take_over(struct session *s, const uint8_t *buf, size_t len, size_t *used);

#endif
