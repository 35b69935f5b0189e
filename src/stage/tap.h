/* tap.h - observers of a session's bytes that never change them: pcap
 * capture (--capture) and hexdump (--hexdump).
 *
 * The session calls these at each socket read and write and at each state
 * change of a leg. A session whose listener records nothing has no tap
 * (NULL), and every call below is a no-op on NULL, so the cost when off is
 * one branch. A session with a tap does not use splice(): the bytes must
 * pass through user space to be seen.
 *
 * Legs: TAP_CLIENT is client <-> ferry, TAP_UPSTREAM is ferry <-> server.
 * from_peer 1: the peer sent it (ferry received); 0: ferry sent it.
 */
#ifndef FERRY_TAP_H
#define FERRY_TAP_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "net/addr.h"

struct tap;

enum tap_leg { TAP_CLIENT = 0, TAP_UPSTREAM = 1 };

/* Process-wide: opens capture files and starts their writer threads for
 * every listener that asks (before the workers start). 0, or -1 with a
 * one-line reason naming the file. */
int tap_global_start(struct ferry_cfg *cfg, char *err, size_t errlen);
/* Flushes and closes everything (after the workers stopped); logs how many
 * capture records were dropped, if any. */
void tap_global_stop(struct ferry_cfg *cfg);

/* Whether sessions of this listener get a tap at all (capture or hexdump
 * configured). */
int tap_enabled(const struct listener_cfg *cfg);
/* Whether packets are written, which needs each leg's addresses: lets
 * accept and connect skip getsockname() for hexdump alone. */
int tap_wants_addresses(const struct listener_cfg *cfg);
int tap_captures(const struct tap *t);

/* At accept: local is the accepted socket's own address. NULL when the
 * listener records nothing, or its --capture-filter rules the client out
 * and it has no hexdump. */
struct tap *tap_open(const struct listener_cfg *cfg, uint64_t sess_id, const struct net_addr *client,
                     const struct net_addr *local);
/* The upstream connection is established: local is ferry's end. */
void tap_upstream(struct tap *t, const struct net_addr *local, const struct net_addr *remote);
/* Bytes that crossed a socket on a leg. */
void tap_bytes(struct tap *t, enum tap_leg leg, int from_peer, const void *p, size_t n);
/* Application bytes of a direction (what the log's up=/down= count: the
 * plaintext for Shadowsocks), and the replies ferry writes itself (SOCKS),
 * for hexdump. up 1: client -> upstream, 0: upstream -> client. */
void tap_plain(struct tap *t, int up, const void *p, size_t n);

/* Secrets (SOCKS5 passwords): unless the listener has --capture-secrets,
 * the bytes a front-end marks secret are written as '*', same length, in
 * the capture (the client leg, client to ferry) and in the hexdump
 * (client>upstream). Offsets count the client's stream from its first byte;
 * front-ends that mark secrets (SOCKS) read it unchanged, so that stream is
 * both the client leg's and the dump's.
 *
 * A recorder must not write a chunk before the front-end has seen it, and
 * the session reads before it parses: between tap_hold and tap_release the
 * tap keeps every event (copies, in order) and writes them at the release,
 * with what was marked meanwhile applied. tap_upstream, tap_fin and
 * tap_close release first. A secret may reach past the bytes read so far:
 * the rest is hidden as it comes. */
void tap_hold(struct tap *t);
void tap_release(struct tap *t);
/* Bytes [off, off + n) of the client's stream are secret. The tap keeps
 * one span: marks are merged into the smallest span covering them. */
void tap_secret(struct tap *t, uint64_t off, size_t n);

/* Everything of the client's stream from offset off on is written as '*'
 * in the capture (the client leg, client to ferry), whatever comes: bytes
 * a front-end will never forward (HTTP's next request on a connection,
 * with its own Proxy-Authorization), marked before they are read. The
 * hexdump shows what is forwarded and needs no mark. Unless
 * --capture-secrets. */
void tap_secret_from(struct tap *t, uint64_t off);

/* FIN on a leg: from_peer 1 = the peer's (EOF read), 0 = ferry's shutdown. */
void tap_fin(struct tap *t, enum tap_leg leg, int from_peer);
/* The session is over: ends each leg still open (RST where ferry reset it,
 * else FIN both ways) and frees the tap. */
void tap_close(struct tap *t, int rst_client, int rst_upstream);

#endif
