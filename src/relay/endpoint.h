/* endpoint.h - one end of a session: what the mover reads from and writes to.
 *
 * An endpoint is a socket today, and a stream inside a shared connection
 * (a multiplexer) tomorrow: the mover only asks it to read, write, shut
 * down its sending side and reset. splice() needs real sockets on both
 * ends, so an endpoint says whether it has one (endpoint_fd() >= 0).
 *
 * read: >0 bytes, 0 EOF, -1 with errno (EAGAIN: nothing now).
 * write: >0 bytes, -1 with errno (EAGAIN: full now).
 */
#ifndef FERRY_ENDPOINT_H
#define FERRY_ENDPOINT_H

#include <stddef.h>
#include <sys/types.h>

struct endpoint;

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
};

struct endpoint {
    const struct endpoint_ops *ops;
    void *ctx;                     /* the socket's loop_io, or a stream */
};

static inline ssize_t endpoint_read(struct endpoint *e, void *p, size_t n) { return e->ops->read(e, p, n); }
static inline ssize_t endpoint_write(struct endpoint *e, const void *p, size_t n) { return e->ops->write(e, p, n); }
static inline int endpoint_fd(const struct endpoint *e) { return e->ops->fd(e); }

/* A socket whose fd is read from a loop_io at each call (-1 once closed). */
struct loop_io;
void endpoint_socket(struct endpoint *e, struct loop_io *io);
/* A bare fd (tests, tools): ctx points at the int. */
void endpoint_fd_socket(struct endpoint *e, int *fd);

#endif
