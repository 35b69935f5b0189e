/* sess_filters.h - a session's filters: the listener's rewrite rules and
 * Lua filter, as filter stages of its two directions (stage/stage.h).
 *
 * Added when the session starts relaying, so they see the plaintext after
 * any handshake (SOCKS, Shadowsocks) and never the handshake itself. A
 * listener without filters adds no stage and keeps splice.
 */
#ifndef FERRY_SESS_FILTERS_H
#define FERRY_SESS_FILTERS_H

#include "relay/session-t.h"

struct relay_listener;

/* A worker's listener starts: its Lua state is made and the script run
 * (before privileges are dropped, so the path resolves). 0, or -1 with err. */
int sess_filters_listener_start(struct relay_listener *wl, char *err, size_t errlen);
void sess_filters_listener_stop(struct relay_listener *wl);

/* 0; -1 when out of memory, -2 when the filter refused the session (its
 * on_connect failed, already logged). What was added goes with the session. */
int sess_filters_attach(struct session *s);

/* What a script's `s` shows of a relaying session (sanitised). */
struct stage_session;
void sess_describe(const struct session *s, struct stage_session *info);

#endif
