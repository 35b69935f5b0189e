/* tap.c - see tap.h. Placeholder while capture and hexdump are built: no
 * listener records anything yet, so no session gets a tap. */
#include "stage/tap.h"

int tap_global_start(struct ferry_cfg *cfg, char *err, size_t errlen)
{
    (void)cfg;
    (void)err;
    (void)errlen;
    return 0;
}

void tap_global_stop(struct ferry_cfg *cfg) { (void)cfg; }

int tap_enabled(const struct listener_cfg *cfg)
{
    (void)cfg;
    return 0;
}

struct tap *tap_open(const struct listener_cfg *cfg, uint64_t sess_id, const struct net_addr *client,
                     const struct net_addr *local)
{
    (void)cfg;
    (void)sess_id;
    (void)client;
    (void)local;
    return NULL;
}

void tap_upstream(struct tap *t, const struct net_addr *local, const struct net_addr *remote)
{
    (void)t;
    (void)local;
    (void)remote;
}

void tap_bytes(struct tap *t, enum tap_leg leg, int from_peer, const void *p, size_t n)
{
    (void)t;
    (void)leg;
    (void)from_peer;
    (void)p;
    (void)n;
}

void tap_plain(struct tap *t, int up, const void *p, size_t n)
{
    (void)t;
    (void)up;
    (void)p;
    (void)n;
}

void tap_fin(struct tap *t, enum tap_leg leg, int from_peer)
{
    (void)t;
    (void)leg;
    (void)from_peer;
}

void tap_close(struct tap *t, int rst_client, int rst_upstream)
{
    (void)t;
    (void)rst_client;
    (void)rst_upstream;
}
