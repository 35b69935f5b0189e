/* cfgdiff.h - what a reload changes: the running listeners against a new
 * config, and the global options a reload cannot change (pure: no I/O).
 *
 * Listeners are matched by name. One whose every option is the same (and
 * whose --filter script has the same content, `filter_sum`) is kept as it
 * runs; one that differs is changed (a new listener takes its place, its
 * sessions keep the old one); a name only the new config has is added, one
 * only the old has is removed.
 */
#ifndef FERRY_CFGDIFF_H
#define FERRY_CFGDIFF_H

#include <stddef.h>

#include "config/config.h"

/* 1 when a and b configure the same listener: every option (and what the
 * pointers hold: users, ACLs, toxics, rewrite rules, the upstream group),
 * apart from the run-time objects (replay filter, capture, hexlog). */
int cfg_listener_same(const struct listener_cfg *a, const struct listener_cfg *b);

/* The first global option that differs between a and b (a reload cannot
 * change it: threads, privileges, log destination, API...), as its flag
 * ("--threads"), or NULL when none does. */
const char *cfg_global_change(const struct ferry_cfg *a, const struct ferry_cfg *b);

enum cfg_change { CFG_ADDED, CFG_CHANGED, CFG_KEPT };

/* The caller's arrays: what[nnew] and old_idx[nnew] for each new listener
 * (old_idx -1 when added), retire[nold] 1 for each old listener that is
 * removed or changed. The counts are filled. */
struct cfg_diff {
    enum cfg_change *what;
    long *old_idx;
    unsigned char *retire;
    size_t added, removed, changed, kept;
};

/* Diffs the running listeners old[0, nold) against nw[0, nnew). 0, or -1
 * when out of memory. */
int cfg_diff_listeners(const struct listener_cfg *const *old, size_t nold, const struct listener_cfg *nw,
                       size_t nnew, struct cfg_diff *d);

/* 1 when address a is a listen address of an old listener that the diff
 * retires (its listening sockets then pass to the new listener: no
 * connection is refused), else 0. */
int cfg_diff_address_held(const struct listener_cfg *const *old, size_t nold, const unsigned char *retire,
                          const struct net_addr *a);

/* FNV-1a, for filter_sum. */
uint64_t cfg_content_sum(const void *buf, size_t len);

#endif
