/* sess_filters.c - see sess_filters.h. */
#include "relay/sess_filters.h"

#include "config/config.h"
#include "core/worker-t.h"
#include "relay/pipe.h"
#include "stage/rewrite.h"

/* The rewrite rules of one direction, if it has any. Bytes already waiting
 * up (early data) are the rules' input; down holds only the front-end's
 * reply by now, which no rule may touch. */
static int add_rewrite(struct session *s, int up)
{
    const struct stage_ops *ops;
    void *state;
    if (rewrite_stage_new(&s->wl->cfg->rewrite, up, &ops, &state) < 0) return -1;
    if (!state) return 0;
    return pipe_add_stage(up ? &s->up : &s->down, ops, state, up);
}

int sess_filters_attach(struct session *s)
{
    if (!s->wl->cfg->rewrite.n) return 0;
    if (add_rewrite(s, 1) < 0 || add_rewrite(s, 0) < 0) return -1;
    return 0;
}
