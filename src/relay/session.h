/* session.h - session lifecycle, used by the listener handlers (rlistener.c)
 * and by front-ends. */
#ifndef FERRY_SESSION_H
#define FERRY_SESSION_H

#include <stddef.h>

#include "relay/front.h"
#include "relay/rlistener-t.h"
#include "relay/session-t.h"

/* Takes ownership of the accepted, non-blocking fd and of the admission
 * counts (given back when the session closes). Returns 0, or -1 if no
 * session could be created: the fd is closed and the counts are the
 * caller's to give back. */
int sess_accept(struct relay_listener *wl, int fd, const struct net_addr *peer, int counted_ip);

/* Makes e (the new session's client endpoint, whose ready/owner are the
 * session's and must be kept) something other than a socket: 0, or -1. */
typedef int sess_bind_client_fn(struct endpoint *e, void *arg);
/* A session whose client is not a socket (a stream in a multiplexer):
 * bind(&client, arg) sets it up. Takes the admission counts as
 * sess_accept does. 0, or -1 (out of memory; bind not called). */
int sess_accept_endpoint(struct relay_listener *wl, const struct net_addr *peer, int counted_ip,
                         sess_bind_client_fn *bind, void *arg);

/* Ends the session: logs its line, closes both sides, frees it after the
 * current epoll batch. Safe to call twice (the first end reason wins). */
void sess_close(struct session *s, enum sess_end why);

/* For front-ends. sess_reply queues bytes to the client ahead of any relayed
 * data; returns -1 if they do not fit (a front-end bug). */
int sess_reply(struct session *s, const void *data, size_t len);
/* For front-ends, from on_data: bytes [off, off + n) of the buffer it was
 * handed are a secret (a SOCKS5 password), to be starred in captures and
 * dumps (tap.h). The span may reach past the buffer: the rest is still to
 * come. */
void sess_secret(struct session *s, size_t off, size_t n);
/* For front-ends, from on_data: from offset off of that buffer on, the
 * client's bytes are never forwarded (what follows an HTTP request): the
 * capture stars them whatever they hold. */
void sess_secret_from(struct session *s, size_t off);
/* For front-ends, from attach: bytes for the upstream ahead of the early
 * data (an HTTP proxy's rewritten request head). 0, or -1 if they do not
 * fit beside it in the handshake buffer. */
int sess_forward(struct session *s, const void *data, size_t len);
int sess_set_target(struct session *s, const char *host, uint16_t port, int check_policy);
/* Before returning FRONT_FAIL: why the handshake failed (the log's end=);
 * without it the session ends handshake_error. */
void sess_fail_reason(struct session *s, enum sess_end why);
const char *sess_end_name(enum sess_end e);

/* A new session id (the log's sess=), unique in the process: also for
 * what is logged like a session without being one (an ss-server UDP
 * client). */
uint64_t sess_new_id(void);

/* Internal to relay/ (connect.c drives these). */
int sess_upstream_register(struct session *s, int fd);
void sess_relay_start(struct session *s, int fd);
/* The upstream endpoint is set up and connected (a multiplexed stream). */
void sess_relay_start_endpoint(struct session *s);
void sess_connect_failed(struct session *s, enum sess_fail why, enum sess_end end);
void sess_kick(struct session *s);
/* The listener's toxics changed (API): apply the new set to this session.
 * On the session's worker thread. */
void sess_toxics_refresh(struct session *s);

#endif
