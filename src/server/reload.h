/* reload.h - SIGHUP: read the configuration again and apply it while
 * ferry runs (docs/CONFIG.md, "Reloading").
 *
 * The new configuration comes from the same place as the first: the
 * command line is parsed again (a copy of it as it was given, since the
 * parse blanks secrets), which reads `ferry run -c FILE`, or for a
 * command-line start the files it names (--users-file, --password-file, a
 * shadowsocks JSON -c FILE, --filter scripts). It is diffed against the
 * running listeners (config/cfgdiff.h): a kept listener runs on untouched;
 * an added one binds and starts; a changed one is replaced by a new
 * listener that takes over the old one's listening sockets (same
 * addresses: no connection is refused) while the old one keeps its
 * sessions, with their config, until they end or the drain timeout closes
 * them; a removed one stops accepting and drains the same way.
 *
 * A config that does not load, changes a global option (threads,
 * privileges, the log, the API...), or cannot be set up on every worker is
 * refused as a whole: the old one keeps serving. Configs live in
 * generations, each freed once no listener (running or draining) uses it.
 *
 * Main thread only; the workers are reached through their command queues
 * (core/wcmd.h), as the API does (server/runtime.c).
 */
#ifndef FERRY_RELOAD_H
#define FERRY_RELOAD_H

#include <stddef.h>

#include "server/worker-t.h"

struct reload;

/* After workers_create() and before the privilege drop (it reads the
 * --filter scripts the workers loaded). cfg is the running config (the
 * caller's: freed by the caller, after reload_free()); argv a copy of the
 * command line as given (kept, not owned, until reload_free()). NULL when
 * out of memory (then SIGHUP cannot reload). */
struct reload *reload_new(struct ferry_cfg *cfg, int argc, char **argv, struct server_worker *ws, unsigned n);

/* Reloads; every line is logged (sig names the signal in them). 0 applied,
 * -1 refused: the old configuration keeps serving. */
int reload_run(struct reload *r, const char *sig);

/* Frees what the listeners that reloads retired no longer use (their
 * drain is over on every worker). Call it now and then. */
void reload_reap(struct reload *r);

/* The running listeners' configs, in config order, into out[0, max);
 * returns how many there are. */
size_t reload_listeners(const struct reload *r, const struct listener_cfg **out, size_t max);

/* After workers_join_and_free(): frees every generation but the first
 * (the caller's), and the replay filters all of them used. NULL is fine. */
void reload_free(struct reload *r);

#endif
