/* udp.c - see udp.h. */
#include "net/udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int udp_socket(int family, const struct net_addr *bind_to, int reuseport)
{
    int one = 1, fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    (void)setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    if (family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        (bind_to && bind(fd, &bind_to->u.sa, bind_to->len) < 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

ssize_t udp_recv(int fd, uint8_t *buf, size_t cap, struct net_addr *from, uint32_t *ovfl)
{
    union {
        char b[CMSG_SPACE(sizeof(uint32_t))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { buf, cap };
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    memset(from, 0, sizeof(*from));
    m.msg_name = &from->u;
    m.msg_namelen = sizeof(from->u);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.b;
    m.msg_controllen = sizeof(ctl.b);
    ssize_t n = recvmsg(fd, &m, 0);
    if (n < 0) return -1;
    from->len = m.msg_namelen;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) memcpy(ovfl, CMSG_DATA(c), sizeof(*ovfl));
    if (m.msg_flags & MSG_TRUNC) {
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

void udp_unmap(struct net_addr *x)
{
    static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (x->u.sa.sa_family != AF_INET6 || memcmp(&x->u.in6.sin6_addr, prefix, 12) != 0) return;
    struct sockaddr_in in;
    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    in.sin_port = x->u.in6.sin6_port;
    memcpy(&in.sin_addr, (const uint8_t *)&x->u.in6.sin6_addr + 12, 4);
    memset(x, 0, sizeof(*x));
    memcpy(&x->u.in, &in, sizeof(in));
    x->len = sizeof(in);
}
