/* balancer.h - upstream server selection (pure: no sockets, no clock).
 *
 * Smooth weighted round robin, as in nginx: every pick adds each server's
 * weight to its current score, picks the highest, and subtracts the total
 * from the winner. Weights 3:1 give A A B A, evenly spread, not A A A B.
 * The group is per worker thread, so picks need no lock.
 */
#ifndef FERRY_BALANCER_H
#define FERRY_BALANCER_H

#include <stddef.h>

struct lb_server {
    int weight;              /* >= 1 */
    int current;             /* smooth WRR score */
    unsigned active;         /* sessions using it now */
    unsigned fails;          /* consecutive connect failures (passive check) */
};

struct lb_group {
    struct lb_server *servers;
    size_t n;
};

/* Index of the next server, skipping those whose bit is set in `exclude`
 * (servers already tried for this client; n <= 64). -1 if none is left. */
int lb_pick(struct lb_group *g, unsigned long long exclude);
/* Bookkeeping at connect end: failed != 0 counts a passive failure. */
void lb_release(struct lb_group *g, int idx, int failed);

#endif
