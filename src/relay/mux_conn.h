/* mux_conn.h - one yamux connection on a worker's loop, and its streams as
 * session endpoints.
 *
 * A mux connection owns a TCP socket and a struct yamux_conn (the sans-I/O
 * protocol state, proto/yamux.h). It reads frames, hands each stream's
 * payload to that stream, writes what the streams send, answers pings,
 * keeps the connection alive with its own pings, and ends everything on
 * a protocol error (GoAway with the protocol-error code), on EOF, or when
 * a keepalive ping goes unanswered.
 *
 * A stream is a session endpoint (relay/endpoint.h): the session that owns
 * it reads, writes, half-closes and closes it as it would a socket.
 *  - Receiving: a Data frame's payload is copied into the stream's own
 *    buffer, which the peer cannot overfill: it is bounded by the window
 *    the stream advertised (256 KiB). Credit goes back to the peer as the
 *    session reads the stream, that is as far as the session's other side
 *    drained: a slow reader stops its own stream, never the others.
 *  - Sending: a write becomes a Data frame in the connection's send
 *    buffer, as far as the stream's send window and a high-water mark of
 *    that buffer allow (else EAGAIN, and the stream is woken when there is
 *    room again). Frames are written to the socket at once when it takes
 *    them.
 *  - Readiness is level-triggered like epoll's. A stream never calls its
 *    session from inside one of its own operations: events are queued and
 *    delivered from the connection's socket callback or a zero-delay timer.
 *  - When the connection dies, every stream's session is told at once
 *    (EPOLLERR); their reads and writes then fail with ECONNABORTED.
 *
 * The owner (mux-server's accept side or mux-local's pool) learns of new
 * streams the peer opens and of the connection's end through mux_conn_ops.
 */
#ifndef FERRY_MUX_CONN_H
#define FERRY_MUX_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "net/addr.h"
#include "proto/yamux.h"

struct loop;
struct endpoint;
struct mux_conn;
struct mux_stream;

struct mux_conn_ops {
    /* The peer opened stream st (mux-server): bind it to an endpoint with
     * mux_stream_bind(), or return -1 to refuse it (it is reset). */
    int (*opened)(void *owner, struct mux_conn *c, struct mux_stream *st);
    /* An outgoing connection finished connecting (err 0), or failed. */
    void (*up)(void *owner, struct mux_conn *c, int err);
    /* The connection has ended (why: a static reason); its streams' sessions
     * have been told. The connection is freed after this returns. */
    void (*closed)(void *owner, struct mux_conn *c, const char *why);
};

struct mux_conn_cfg {
    enum yamux_role role;
    uint32_t max_streams;          /* 0: YAMUX_DEFAULT_MAX_STREAMS */
    uint32_t keepalive_ms;         /* ping interval; 0: no pings */
    uint32_t dial_timeout_ms;      /* an outgoing connect gives up after this (0: the kernel's) */
    const char *listener;          /* the listener's name, for the log */
};

/* A connection over fd (non-blocking), which it now owns. connecting: the
 * fd's connect() is in progress; ops->up reports its outcome. NULL if out
 * of memory (fd closed). */
struct mux_conn *mux_conn_new(struct loop *l, int fd, int connecting, const struct net_addr *peer,
                              const struct mux_conn_cfg *cfg, const struct mux_conn_ops *ops, void *owner);
/* Ends the connection now, as an error would (streams told, ops->closed). */
void mux_conn_close(struct mux_conn *c, const char *why);
/* Sends GoAway (normal): the peer opens no more streams; the connection
 * closes once its last stream has. */
void mux_conn_goaway(struct mux_conn *c);

/* 1 if a stream may be opened on c now (up, no go-away, not full). */
int mux_conn_usable(const struct mux_conn *c);
unsigned mux_conn_streams(const struct mux_conn *c);
/* 1 if c is up and would take streams, but has --mux-max-streams open. */
int mux_conn_full(const struct mux_conn *c);
uint64_t mux_conn_id(const struct mux_conn *c);
const struct net_addr *mux_conn_peer(const struct mux_conn *c);

/* Opens a stream on c as endpoint e (whose ready/owner are kept): the SYN
 * goes out with `first` (len bytes, at most 512: a target address) as its
 * first data. The stream becomes writable once the peer acknowledges it;
 * a reset before that is an error (EPOLLERR). 0, or -1 with errno
 * (EAGAIN: no room for another stream; EPIPE: c cannot open streams). */
int mux_conn_open_stream(struct mux_conn *c, struct endpoint *e, const void *first, size_t len);

/* Makes e the endpoint of a stream the peer opened (from ops->opened). Its
 * ACK is sent by endpoint_established(), or with its first frame. */
void mux_stream_bind(struct mux_stream *st, struct endpoint *e);
/* For a stream endpoint: ECONNRESET if the peer reset it, ECONNABORTED if
 * its connection is gone, else 0. */
int mux_endpoint_error(const struct endpoint *e);
uint32_t mux_stream_id(const struct mux_stream *st);

#endif
