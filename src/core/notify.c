/* notify.c - systemd's notify protocol. See notify.h. */
#include "core/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_fd = -1;

/* $NOTIFY_SOCKET -> address. "@name" is Linux's abstract namespace (a
 * leading NUL, length without terminator); other forms systemd knows
 * (vsock:) are not ours. 0 or -1. */
static int notify_addr(struct sockaddr_un *sa, socklen_t *len)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n = path ? strlen(path) : 0;
    if (n < 2 || (path[0] != '/' && path[0] != '@') || n >= sizeof(sa->sun_path)) return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, n);
    if (path[0] == '@') sa->sun_path[0] = '\0';
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
    return 0;
}

/* A connected datagram socket: the path is resolved now, so messages still
 * arrive after a chroot, and the credentials systemd checks (NotifyAccess=)
 * are the main process's whichever thread sends. */
int notify_open(void)
{
    struct sockaddr_un sa;
    socklen_t len;
    if (notify_fd >= 0) return 1;
    if (notify_addr(&sa, &len) < 0) return 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sa, len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    notify_fd = fd;
    return 1;
}

int notify_send(const char *msg)
{
    if (notify_fd < 0) return -1;
    ssize_t n = send(notify_fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
    return n < 0 ? -1 : 0;
}

void notify_close(void)
{
    if (notify_fd >= 0) close(notify_fd);
    notify_fd = -1;
}
