/* http_one.h - one request per connection for absolute-form HTTP
 * proxying (relay/front_http.c), as a stage on the client-to-origin
 * direction (stage/stage.h, role STAGE_DECODER: the first link after the
 * client's bytes).
 *
 * The origin is chosen by the connection's first request. A client that
 * keeps the connection alive may send its next request there too, meant
 * for another host and carrying its own Proxy-Authorization; an origin
 * that ignores the Connection: close ferry sent would get it. So the stage
 * lets through the forwarded head and then the body as the request frames
 * it (proto/http_proxy.h), drops empty lines after it, and holds anything
 * else, forwarding nothing more: the origin's answer to the first request
 * still reaches the client, the origin closes, and the session with it.
 * An origin that stays open past HTTP_ONE_GRACE_US after a next request
 * came ends the session (STAGE_CLOSE, end=http_next_request). Either way
 * the client sends the request again on a new connection, which RFC 9112
 * 9.3.1 requires it to handle.
 *
 * Pure: bytes in, bytes out.
 */
#ifndef FERRY_HTTP_ONE_H
#define FERRY_HTTP_ONE_H

#include <stddef.h>

#include "proto/http_proxy.h"
#include "stage/stage.h"

/* How long an origin may keep the connection open once the client sent a
 * next request (its answer to the first may still be arriving). */
#define HTTP_ONE_GRACE_US (2u * 1000u * 1000u)

extern const struct stage_ops http_one_stage_ops;

/* The stage's state for request r (DONE, absolute form), whose forwarded
 * head (head_len bytes) comes first in its input. NULL if out of memory. */
void *http_one_new(const struct http_proxy_req *r, size_t head_len);

#endif
