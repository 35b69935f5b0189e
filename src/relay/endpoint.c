/* endpoint.c - see endpoint.h: the socket endpoint. */
#include "relay/endpoint.h"

#include <sys/socket.h>

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

static const struct endpoint_ops loop_socket_ops = {sock_read, sock_write, sock_shutdown_write, sock_reset, io_fd};
static const struct endpoint_ops fd_socket_ops = {sock_read, sock_write, sock_shutdown_write, sock_reset, int_fd};

void endpoint_socket(struct endpoint *e, struct loop_io *io)
{
    e->ops = &loop_socket_ops;
    e->ctx = io;
}

void endpoint_fd_socket(struct endpoint *e, int *fd)
{
    e->ops = &fd_socket_ops;
    e->ctx = fd;
}
