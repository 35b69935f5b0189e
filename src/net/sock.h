/* sock.h - thin socket wrappers. 0 / -1 + errno unless stated otherwise. */
#ifndef FERRY_SOCK_H
#define FERRY_SOCK_H

#include <stddef.h>

#include "net/addr.h"

/* Non-blocking, close-on-exec listening socket with SO_REUSEADDR, and
 * SO_REUSEPORT when reuseport is set (one socket per worker). IPv6 sockets
 * are IPv6-only, as in nginx: listen on both families explicitly. The
 * socket has TCP_NODELAY, which accepted sockets inherit (Linux).
 * Returns the fd, or -1 with a one-line reason in err. */
int sock_listen(const struct net_addr *a, int reuseport, int backlog, char *err, size_t errlen);

/* SO_REUSEPORT would let us bind next to another process that already
 * listens on the address, and the kernel would silently split connections
 * between us. Binding once without it first turns that into a clear
 * "address in use". Returns 0, or -1 with a reason in err. */
int sock_check_unused(const struct net_addr *a, char *err, size_t errlen);

/* Binds `a` n times with SO_REUSEPORT into fds[n], one socket per worker,
 * after sock_check_unused. Port 0 picks a free port, then binds the others
 * to it. *bound is the address bound. 0, or -1 with err ("cannot listen on
 * ADDR: Address already in use") and errno set; no fd is left open then. */
int sock_listen_group(const struct net_addr *a, int backlog, unsigned n, int *fds, struct net_addr *bound,
                      char *err, size_t errlen);
/* Closes the fds that are >= 0 and sets them to -1. */
void sock_close_fds(int *fds, unsigned n);

/* Starts a non-blocking connect. Returns the fd (connect in progress or done),
 * or -1 with errno (EMFILE, ENETUNREACH, ...). */
int sock_connect(const struct net_addr *a);

/* Pending error of a socket (SO_ERROR), 0 if none. */
int sock_error(int fd);

void sock_set_nodelay(int fd);
/* Close with RST instead of FIN: SO_LINGER with a zero timeout. */
void sock_set_linger0(int fd);
int sock_local_addr(int fd, struct net_addr *out);

/* Lifts the open-files soft limit to the hard limit (as nginx does).
 * Returns the new soft limit. */
long sock_raise_nofile(void);

#endif
