/* sock.c - see sock.h. */
#include "net/sock.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int sock_listen(const struct net_addr *a, int reuseport, int backlog, char *err, size_t errlen)
{
    char as[NET_ADDR_STRLEN];
    int one = 1;
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) goto fail;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) goto fail;
    if (a->u.sa.sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, &a->u.sa, a->len) < 0) goto fail;
    if (listen(fd, backlog) < 0) goto fail;
    /* Accepted sockets inherit TCP_NODELAY from the listener: one
     * setsockopt here instead of one per connection. */
    sock_set_nodelay(fd);
    return fd;
fail:
    snprintf(err, errlen, "cannot listen on %s: %s", net_addr_format(a, as, sizeof(as)),
             strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
}

int sock_check_unused(const struct net_addr *a, char *err, size_t errlen)
{
    char as[NET_ADDR_STRLEN];
    int one = 1, rc = 0;
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;   /* sock_listen() will report it */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->u.sa.sa_family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, &a->u.sa, a->len) < 0 && errno == EADDRINUSE) {
        snprintf(err, errlen, "cannot listen on %s: address in use (another process listens there)",
                 net_addr_format(a, as, sizeof(as)));
        rc = -1;
    }
    close(fd);
    return rc;
}

int sock_connect(const struct net_addr *a)
{
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sock_set_nodelay(fd);
    if (connect(fd, &a->u.sa, a->len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int sock_error(int fd)
{
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) return errno;
    return e;
}

void sock_set_nodelay(int fd)
{
    int one = 1;
    /* Best effort: a relay must not add Nagle delay to small writes. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void sock_set_linger0(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

int sock_local_addr(int fd, struct net_addr *out)
{
    memset(out, 0, sizeof(*out));
    out->len = sizeof(out->u);
    return getsockname(fd, &out->u.sa, &out->len);
}

long sock_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}

void sock_close_fds(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (fds[i] >= 0) close(fds[i]);
        fds[i] = -1;
    }
}

int sock_listen_group(const struct net_addr *a, int backlog, unsigned n, int *fds, struct net_addr *bound,
                      char *err, size_t errlen)
{
    struct net_addr at = *a;
    for (unsigned i = 0; i < n; i++) fds[i] = -1;
    /* Another process's SO_REUSEPORT socket would silently share the port. */
    if (net_addr_port(a) != 0 && sock_check_unused(a, err, errlen) < 0) {
        errno = EADDRINUSE;
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        fds[i] = sock_listen(&at, 1, backlog, err, errlen);
        if (fds[i] < 0) {
            int e = errno;
            sock_close_fds(fds, i);
            errno = e;
            return -1;
        }
        if (i == 0 && sock_local_addr(fds[0], &at) < 0) {
            int e = errno;
            snprintf(err, errlen, "getsockname: %s", strerror(e));
            sock_close_fds(fds, 1);
            errno = e;
            return -1;
        }
    }
    *bound = at;
    return 0;
}
