/* server.h - the HTTP API's own thread: one loop, non-blocking sockets,
 * keep-alive, requests parsed by api/http.c and answered by api/router.c.
 *
 * It is a control plane for the local operator: at most API_MAX_CONNS
 * connections, idle ones closed after API_IDLE_MS, one request at a time
 * per connection, browsers refused (see http.h).
 */
#ifndef FERRY_API_SERVER_H
#define FERRY_API_SERVER_H

#include <stddef.h>

#include "api/router.h"
#include "net/addr.h"

#define API_MAX_CONNS 64
#define API_IDLE_MS 60000

struct api_server;

/* Binds addr and starts the thread. The backend must stay valid until
 * api_server_stop() returns. NULL with a reason in err. */
struct api_server *api_server_start(const struct net_addr *addr, const struct api_backend *b,
                                    char *err, size_t errlen);
/* Stops the thread (a request being answered completes first) and frees. */
void api_server_stop(struct api_server *s);

#endif
