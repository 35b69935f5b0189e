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

/* 0, or -1 when out of memory (what was added goes with the session). */
int sess_filters_attach(struct session *s);

#endif
