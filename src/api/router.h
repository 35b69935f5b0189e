/* router.h - toxiproxy's HTTP API as a pure function: method, path and body
 * in; status and JSON body out (sans-I/O: no sockets, no threads).
 *
 * The proxies themselves live behind `struct api_backend` (api/control.c
 * for the real listeners; the unit tests and the fuzz target use a fake
 * one). Toxics are handled here: the router reads a proxy's toxic slot,
 * builds the new set, publishes it and tells the backend, which makes the
 * proxy's open sessions pick it up.
 */
#ifndef FERRY_API_ROUTER_H
#define FERRY_API_ROUTER_H

#include <stddef.h>

#include "stage/toxic.h"

/* A proxy as the API shows it. */
struct api_proxy {
    char name[64];
    char listen[300];
    char upstream[300];
    int enabled;
    struct toxic_slot *toxics;
};

/* What POST /proxies or /proxies/NAME asked for. NULL / -1: not given (an
 * update keeps the current value; create uses the defaults). */
struct api_proxy_req {
    const char *name, *listen, *upstream;
    int enabled;
};

/* Backend calls return 0, or an HTTP status (400, 409, 500) with
 * toxiproxy-style text in err. Indexes are valid until the next call that
 * creates or removes. */
struct api_backend {
    void *ctx;
    const char *version;
    size_t (*count)(void *ctx);
    int (*get)(void *ctx, size_t i, struct api_proxy *out);
    long (*find)(void *ctx, const char *name);
    int (*create)(void *ctx, const struct api_proxy_req *req, char *err, size_t errlen);
    int (*update)(void *ctx, size_t i, const struct api_proxy_req *req, char *err, size_t errlen);
    int (*remove)(void *ctx, size_t i, char *err, size_t errlen);
    /* The proxy's toxic set was published anew. */
    void (*toxics_changed)(void *ctx, size_t i);
};

struct api_response {
    int status;
    char *body;        /* malloc'd JSON, or NULL (204) */
    size_t len;
    const char *content_type;   /* NULL: JSON (sent with a final "\n") */
};

/* url may carry a query string (ignored). body may be NULL. */
void api_route(const struct api_backend *b, const char *method, const char *url,
               const char *body, size_t bodylen, struct api_response *out);
/* {"error": msg, "status": status} */
void api_error(struct api_response *out, int status, const char *msg);
void api_response_free(struct api_response *r);
const char *api_status_text(int status);

#endif
