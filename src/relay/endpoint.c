/* endpoint.c - see endpoint.h: the socket endpoint. */
#include "relay/endpoint.h"

#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "net/sock.h"

static int io_fd(const struct endpoint *e) { return ((const struct loop_io *)e->ctx)->fd; }
static int int_fd(const struct endpoint *e) { return *(const int *)e->ctx; }

static ssize_t sock_read(struct endpoint *e, void *p, size_t n) { return recv(endpoint_fd(e), p, n, 0); }

static ssize_t sock_write(struct endpoint *e, const void *p, size_t n)
{
    return send(endpoint_fd(e), p, n, MSG_NOSIGNAL);
}

static void sock_shutdown_write(struct endpoint *e) { (void)shutdown(endpoint_fd(e), SHUT_WR); }

static void sock_reset(struct endpoint *e)
{
    if (endpoint_fd(e) >= 0) sock_set_linger0(endpoint_fd(e));
}

static int sock_is_open(const struct endpoint *e) { return endpoint_fd(e) >= 0; }

static void io_want(struct endpoint *e, uint32_t want)
{
    struct loop_io *io = e->ctx;
    if (io->fd >= 0) loop_io_want(e->loop, io, want);
}

static uint32_t io_wanted(const struct endpoint *e) { return ((const struct loop_io *)e->ctx)->want; }

static void io_close(struct endpoint *e, int abort)
{
    struct loop_io *io = e->ctx;
    if (io->fd < 0) return;
    if (abort) sock_set_linger0(io->fd);
    loop_io_close(e->loop, io);
}

/* A bare fd belongs to its caller: interest and closing are theirs. */
static void int_want(struct endpoint *e, uint32_t want)
{
    (void)e;
    (void)want;
}

static uint32_t int_wanted(const struct endpoint *e)
{
    (void)e;
    return 0;
}

static void int_close(struct endpoint *e, int abort)
{
    if (abort) sock_reset(e);
}

static const struct endpoint_ops loop_socket_ops = {
    .read = sock_read, .write = sock_write, .shutdown_write = sock_shutdown_write, .reset = sock_reset,
    .fd = io_fd, .want = io_want, .wanted = io_wanted, .is_open = sock_is_open, .close = io_close,
};
static const struct endpoint_ops fd_socket_ops = {
    .read = sock_read, .write = sock_write, .shutdown_write = sock_shutdown_write, .reset = sock_reset,
    .fd = int_fd, .want = int_want, .wanted = int_wanted, .is_open = sock_is_open, .close = int_close,
};

void endpoint_socket(struct endpoint *e, struct loop *l, struct loop_io *io)
{
    e->ops = &loop_socket_ops;
    e->ctx = io;
    e->loop = l;
}

void endpoint_fd_socket(struct endpoint *e, int *fd)
{
    e->ops = &fd_socket_ops;
    e->ctx = fd;
}
