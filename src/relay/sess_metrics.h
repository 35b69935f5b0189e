/* sess_metrics.h - what a session tells obs/metrics: one call at accept,
 * one at close (from session.c), and the upstream server's connect and
 * release (from connect.c). The classification of end reasons (refused,
 * handshake failure) lives here, so the session code stays one line per
 * hook. Every function runs on the session's worker thread. */
#ifndef FERRY_SESS_METRICS_H
#define FERRY_SESS_METRICS_H

#include <stdint.h>

#include "relay/session-t.h"

void sess_metrics_accepted(const struct session *s);
/* The session ended (s->end is final). */
void sess_metrics_closed(const struct session *s);
/* Relay: connected to server s->lb_idx, whose attempt began at start_us
 * (clock_now_us). */
void sess_metrics_server_connected(const struct session *s, uint64_t start_us);
/* Relay: server idx given back; failed: a connect attempt failed;
 * connected: the session had been connected to it. */
void sess_metrics_server_released(const struct session *s, int idx, int failed, int connected);

#endif
