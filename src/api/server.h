/* server.h - the HTTP API's own thread: one loop, non-blocking sockets,
 * keep-alive, requests parsed by api/http.c and answered by api/router.c.
 *
 * It is a control plane for the local operator: at most API_MAX_CONNS
 * connections, idle ones closed after API_IDLE_MS, one request at a time
 * per connection, browsers refused (see http.h).
 *
 * The same thread serves Prometheus metrics (obs/metrics.h): GET /metrics
 * on the API's socket, and on --metrics' own socket, which answers nothing
 * else. A scrape reads the workers' counters with relaxed loads: it never
 * waits for a worker, nor a worker for it.
 */
#ifndef FERRY_API_SERVER_H
#define FERRY_API_SERVER_H

#include <stddef.h>

#include "api/router.h"
#include "net/addr.h"

#define API_MAX_CONNS 64
#define API_IDLE_MS 60000

struct api_server;

/* The API's listening socket: bound by main before root is dropped, so a
 * privileged port works with --run-as. The fd, or -1 with a reason in err. */
int api_server_listen(const struct net_addr *addr, char *err, size_t errlen);
/* Starts the thread serving the API on lfd and metrics alone on
 * metrics_fd (either may be -1, not both; both taken: closed on failure
 * too). The backend (NULL without lfd) must stay valid until
 * api_server_stop() returns. NULL with a reason in err. */
struct api_server *api_server_start(int lfd, const struct api_backend *b, int metrics_fd, char *err,
                                    size_t errlen);
/* Stops the thread (a request being answered completes first) and frees. */
void api_server_stop(struct api_server *s);

#endif
