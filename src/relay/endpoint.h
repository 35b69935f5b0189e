/* endpoint.h - one end of a session: what the mover reads from and writes to.
 *
 * An endpoint is a socket, or a stream inside a shared connection (a
 * multiplexer, relay/mux_conn.h): the mover only asks it to read, write,
 * shut down its sending side and reset, and the session asks it for
 * readiness and closes it. splice() needs real sockets on both ends, so an
 * endpoint says whether it has one (endpoint_fd() >= 0).
 *
 * read: >0 bytes, 0 EOF, -1 with errno (EAGAIN: nothing now;
 * ECONNABORTED: the shared connection under a stream is gone).
 * write: >0 bytes, -1 with errno (EAGAIN: full now).
 *
 * Readiness is level-triggered, as epoll's: while the owner wants
 * LOOP_READ (LOOP_WRITE) and the endpoint is readable (writable), the
 * owner hears of it. A socket reports through its loop_io callback; an
 * endpoint without a socket calls `ready(owner, EPOLLIN | EPOLLOUT ...)`
 * from the loop, never from inside one of its own operations.
 */
#ifndef FERRY_ENDPOINT_H
#define FERRY_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct endpoint;
struct loop;

typedef void endpoint_ready_fn(void *owner, uint32_t events);

struct endpoint_ops {
    ssize_t (*read)(struct endpoint *e, void *p, size_t n);
    ssize_t (*write)(struct endpoint *e, const void *p, size_t n);
    /* Sends EOF (a FIN); the other direction keeps going (half-close). A
     * failure only means the peer is gone, which its own read will show. */
    void (*shutdown_write)(struct endpoint *e);
    /* The next close aborts (a TCP RST) instead of ending cleanly. */
    void (*reset)(struct endpoint *e);
    /* The socket behind it, or -1: only socket pairs may splice. */
    int (*fd)(const struct endpoint *e);
    /* Interest, LOOP_READ | LOOP_WRITE, and what was last asked. */
    void (*want)(struct endpoint *e, uint32_t want);
    uint32_t (*wanted)(const struct endpoint *e);
    /* 1 until closed. */
    int (*is_open)(const struct endpoint *e);
    /* Closes; an abort if `abort` or reset() was asked. Safe when closed. */
    void (*close)(struct endpoint *e, int abort);
    /* Optional. The session behind an endpoint the peer opened is ready
     * (its upstream connected): a stream accepts (yamux's ACK). */
    void (*established)(struct endpoint *e);
    /* Optional. " key=value..." naming it for the log (no secrets). */
    void (*describe)(const struct endpoint *e, char *out, size_t outlen);
};

struct endpoint {
    const struct endpoint_ops *ops;
    void *ctx;                     /* the socket's loop_io, or a stream */
    struct loop *loop;             /* sockets: the loop their loop_io is in */
    endpoint_ready_fn *ready;      /* socketless endpoints: how they report */
    void *owner;
};

static inline ssize_t endpoint_read(struct endpoint *e, void *p, size_t n) { return e->ops->read(e, p, n); }
static inline ssize_t endpoint_write(struct endpoint *e, const void *p, size_t n) { return e->ops->write(e, p, n); }
static inline int endpoint_fd(const struct endpoint *e) { return e->ops->fd(e); }
static inline void endpoint_shutdown_write(struct endpoint *e) { e->ops->shutdown_write(e); }
static inline int endpoint_is_open(const struct endpoint *e) { return e->ops->is_open(e); }
static inline void endpoint_want(struct endpoint *e, uint32_t want) { e->ops->want(e, want); }
static inline uint32_t endpoint_wanted(const struct endpoint *e) { return e->ops->wanted(e); }
static inline void endpoint_close(struct endpoint *e, int abort) { e->ops->close(e, abort); }
static inline void endpoint_established(struct endpoint *e)
{
    if (e->ops->established) e->ops->established(e);
}

/* A socket whose fd is read from a loop_io at each call (-1 once closed),
 * registered with loop l by its owner. */
struct loop_io;
void endpoint_socket(struct endpoint *e, struct loop *l, struct loop_io *io);
/* A bare fd (tests, tools): ctx points at the int. No interest, no close. */
void endpoint_fd_socket(struct endpoint *e, int *fd);

#endif
