/* reload.c - see reload.h. The *_cmd functions run on a worker's thread,
 * everything else on the main thread. */
#include "server/reload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/cfgdiff.h"
#include "config/check.h"
#include "config/cli.h"
#include "config/describe.h"
#include "crypto/replay.h"
#include "net/sock.h"
#include "obs/log.h"
#include "server/proxyin.h"
#include "server/worker.h"

/* One loaded configuration. Its listeners are used by the workers while
 * they run or drain: `refs` counts them. */
struct gen {
    struct ferry_cfg own;
    struct ferry_cfg *cfg;           /* &own, or the caller's for the first */
    int argc;
    char **argv;                     /* this parse's copy of the command line (cfg points into it) */
    unsigned refs;
    struct gen *next;
};

/* A listener the workers run, or drain. */
struct live {
    const struct listener_cfg *lc;
    struct listener_shared *sh;
    struct gen *gen;
    int sh_own;                      /* sh is ours (else in the workers' array) */
};

struct retiree {
    struct live l;
    unsigned left;                   /* atomic: workers that still hold it */
    struct retiree *next;
};

/* ss-server replay filters, shared by a listener's configs while the key
 * stays the same (a reload must not forget the salts seen). */
struct rep {
    struct replay *r;
    unsigned refs;
};

struct reload {
    struct server_worker *ws;
    unsigned n;
    int argc;
    char **argv;                     /* as given, never parsed */
    struct gen *gens, *first, *cur;
    struct live *live;
    size_t nlive;
    struct retiree *retirees;
    struct rep *reps;
    size_t nreps;
};

/* ---- replay filters ---- */

static int rep_add(struct reload *r, struct replay *rp)
{
    for (size_t i = 0; i < r->nreps; i++)
        if (r->reps[i].r == rp) return (int)++r->reps[i].refs;
    struct rep *grown = realloc(r->reps, (r->nreps + 1) * sizeof(*grown));
    if (!grown) return -1;
    r->reps = grown;
    r->reps[r->nreps++] = (struct rep){ rp, 1 };
    return 1;
}

static void rep_drop(struct reload *r, struct replay *rp)
{
    for (size_t i = 0; i < r->nreps; i++) {
        if (r->reps[i].r != rp) continue;
        if (--r->reps[i].refs == 0) {
            replay_free(rp);
            r->reps[i] = r->reps[--r->nreps];
        }
        return;
    }
}

/* A new ss-server listener's filter: the running one's when the key is
 * the same, else a new one. 0, or -1 with err. */
static int rep_for(struct reload *r, struct listener_cfg *lc, char *err, size_t errlen)
{
    if (lc->mode != MODE_SS_SERVER) return 0;
    for (size_t i = 0; i < r->nlive; i++) {
        const struct listener_cfg *o = r->live[i].lc;
        if (o->mode == MODE_SS_SERVER && o->replay && strcmp(o->ss_method, lc->ss_method) == 0 &&
            memcmp(o->ss_key, lc->ss_key, sizeof(lc->ss_key)) == 0) {
            if (rep_add(r, o->replay) < 0) break;
            lc->replay = o->replay;
            return 0;
        }
    }
    if (!(lc->replay = replay_new(1000000, 1e-6, err, errlen))) return -1;   /* as at start (main.c) */
    if (rep_add(r, lc->replay) < 0) {
        replay_free(lc->replay);
        lc->replay = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- generations ---- */

static void argv_free(int argc, char **argv)
{
    for (int i = 0; argv && i < argc; i++) {
        if (argv[i]) explicit_bzero(argv[i], strlen(argv[i]));   /* passwords */
        free(argv[i]);
    }
    free(argv);
}

static char **argv_dup(int argc, char **argv)
{
    char **c = calloc((size_t)argc + 1, sizeof(*c));
    for (int i = 0; c && i < argc; i++) {
        if (!(c[i] = strdup(argv[i]))) {
            argv_free(argc, c);
            return NULL;
        }
    }
    return c;
}

/* Its replay filters go back to the registry (the config must not free
 * them: another generation may use them). */
static void gen_drop_replays(struct reload *r, struct gen *g)
{
    for (size_t i = 0; i < g->cfg->nlisteners; i++) {
        struct listener_cfg *lc = &g->cfg->listeners[i];
        if (lc->replay) rep_drop(r, lc->replay);
        lc->replay = NULL;
    }
}

static void gen_free(struct reload *r, struct gen *g)
{
    gen_drop_replays(r, g);
    cfg_free(g->cfg);
    argv_free(g->argc, g->argv);
    free(g);
}

/* Each --filter script's content, so that a reload sees it changed. */
static void sum_filters(struct ferry_cfg *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct listener_cfg *lc = &cfg->listeners[i];
        if (!lc->filter_path[0]) continue;
        FILE *f = fopen(lc->filter_path, "rb");
        char buf[8192];
        size_t got;
        uint64_t sum = 1;
        if (!f) continue;            /* 0: the listener's attach says why */
        while ((got = fread(buf, 1, sizeof(buf), f)) > 0) sum = sum * 31 + cfg_content_sum(buf, got);
        fclose(f);
        lc->filter_sum = sum ? sum : 1;
    }
}

/* Parses the command line again, as at start: for `ferry run -c FILE` the
 * file (its errors logged as FILE:LINE:COL), else the files the flags name.
 * NULL with err ("" when the errors are already logged). */
static struct gen *gen_load(struct reload *r, char *err, size_t errlen)
{
    struct gen *g = calloc(1, sizeof(*g));
    enum cli_action action;
    int mode;
    err[0] = '\0';
    if (!g || !(g->argv = argv_dup(r->argc, r->argv))) {
        free(g);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->argc = r->argc;
    g->cfg = &g->own;
    if (cli_parse(g->argc, g->argv, g->cfg, &action, &mode, err, errlen) < 0 ||
        (g->cfg->config_path && cfg_file_load(g->cfg) < 0)) {
        gen_free(r, g);
        return NULL;
    }
    sum_filters(g->cfg);
    return g;
}

/* ---- the workers' side ---- */

struct plan_new {
    struct listener_cfg *lc;
    struct listener_shared *sh;
    int *fds;                        /* [address * n + worker]: newly bound; -1 where taken over */
    struct wlistener **wl;           /* [worker]: made by prepare */
};

struct plan {
    struct plan_new *add;
    size_t nadd;
    struct retiree **old;            /* the listeners retired */
    size_t nold;
    unsigned n;
    unsigned drain_ms;
    int failed;                      /* atomic */
    char err[320];                   /* the first failure, written by that worker only */
};

static struct wlistener *find_wl(struct server_worker *w, const struct listener_shared *sh)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].sh == sh && w->listeners[i].rl) return &w->listeners[i];
    for (struct wlistener *wl = w->dyn; wl; wl = wl->dyn_next)
        if (wl->sh == sh && wl->rl) return wl;
    return NULL;
}

/* Every new listener's relay state on this worker, linked but with no
 * socket: nothing reaches it before commit. */
static void prepare_cmd(void *owner, void *arg)
{
    struct server_worker *w = owner;
    struct plan *p = arg;
    char err[256];
    for (size_t i = 0; i < p->nadd; i++) {
        struct wlistener *wl = calloc(1, sizeof(*wl));
        if (!wl || worker_listener_setup(w, wl, p->add[i].lc, p->add[i].sh, err, sizeof(err)) < 0) {
            if (!wl) snprintf(err, sizeof(err), "out of memory");
            if (wl) worker_listener_release(wl);
            free(wl);
            if (!__atomic_exchange_n(&p->failed, 1, __ATOMIC_ACQ_REL))
                snprintf(p->err, sizeof(p->err), "listener %s: %s", p->add[i].lc->name, err);
            return;
        }
        wl->dyn_next = w->dyn;
        w->dyn = wl;
        p->add[i].wl[w->rw.id] = wl;
    }
}

static void abort_cmd(void *owner, void *arg)
{
    struct server_worker *w = owner;
    struct plan *p = arg;
    for (size_t i = 0; i < p->nadd; i++) {
        struct wlistener *wl = p->add[i].wl[w->rw.id];
        if (!wl) continue;
        for (struct wlistener **pp = &w->dyn; *pp; pp = &(*pp)->dyn_next) {
            if (*pp != wl) continue;
            *pp = wl->dyn_next;
            break;
        }
        worker_listener_release(wl);
        loop_defer_free(w->rw.loop, wl, free);
        p->add[i].wl[w->rw.id] = NULL;
    }
}

static void retired_cb(void *arg)
{
    struct retiree *rt = arg;
    __atomic_sub_fetch(&rt->left, 1, __ATOMIC_ACQ_REL);
}

/* The socket for address a of a new listener: the retired listener's that
 * listens there (its accept queue included), else the one bound for it. */
static int socket_for(struct server_worker *w, struct plan *p, struct plan_new *pn, size_t j)
{
    const struct net_addr *a = &pn->lc->listen[j];
    for (size_t k = 0; k < p->nold; k++) {
        struct wlistener *old = find_wl(w, p->old[k]->l.sh);
        int fd = old ? worker_listener_take_socket(old, a) : -1;
        if (fd < 0) continue;
        /* Connections it accepted that still wait for their PROXY header
         * came through this socket (or a sibling): the new listener admits
         * them, so the reload resets none. */
        proxyin_move_listener(old, pn->wl[w->rw.id]);
        return fd;
    }
    int *fresh = &pn->fds[j * p->n + (unsigned)w->rw.id];
    int fd = *fresh;
    *fresh = -1;
    return fd;
}

/* One step, between two event batches: the new listeners get their
 * sockets and start, the retired ones drain. */
static void commit_cmd(void *owner, void *arg)
{
    struct server_worker *w = owner;
    struct plan *p = arg;
    char err[256], a[NET_ADDR_STRLEN];
    for (size_t i = 0; i < p->nadd; i++) {
        struct plan_new *pn = &p->add[i];
        struct wlistener *wl = pn->wl[w->rw.id];
        for (size_t j = 0; wl && j < pn->lc->nlisten; j++) {
            int fd = socket_for(w, p, pn, j);
            if (fd < 0 || worker_listener_add_socket(wl, fd) < 0) {
                log_error("listener=%s worker %d: cannot listen on %s: %s", pn->lc->name, w->rw.id,
                          net_addr_format(&pn->lc->listen[j], a, sizeof(a)), fd < 0 ? "no socket" : strerror(errno));
                if (fd >= 0) close(fd);
            }
        }
        if (wl && wl->handler->start(wl->rl, err, sizeof(err)) < 0)
            log_error("listener=%s worker %d: %s", pn->lc->name, w->rw.id, err);
    }
    for (size_t k = 0; k < p->nold; k++) {
        struct wlistener *old = find_wl(w, p->old[k]->l.sh);
        if (old) worker_listener_retire(old, p->drain_ms, retired_cb, p->old[k]);
        else retired_cb(p->old[k]);
    }
}

static struct wcmd_queue *queue_at(void *set, unsigned i)
{
    struct server_worker *ws = set;
    return &ws[i].cmdq;
}

/* ---- the plan ---- */

static void plan_free(struct plan *p)
{
    for (size_t i = 0; p->add && i < p->nadd; i++) {
        struct plan_new *pn = &p->add[i];
        if (pn->fds) sock_close_fds(pn->fds, (unsigned)(pn->lc->nlisten * p->n));
        free(pn->fds);
        free(pn->wl);
        if (pn->sh) {
            worker_shared_free(pn->sh);
            free(pn->sh);
        }
    }
    free(p->add);
    free(p->old);
}

/* A new listener's shared state, and its sockets for the addresses no
 * retired listener hands over. 0, or -1 with err. */
static int plan_listener(struct reload *r, struct plan *p, const struct listener_cfg *const *old,
                         const unsigned char *retire, struct listener_cfg *lc, char *err, size_t errlen)
{
    struct plan_new *pn = &p->add[p->nadd++];
    pn->lc = lc;
    pn->wl = calloc(r->n, sizeof(struct wlistener *));
    pn->fds = malloc(lc->nlisten * r->n * sizeof(*pn->fds) + 1);
    struct listener_shared *sh = calloc(1, sizeof(*sh));
    if (!pn->wl || !pn->fds || !sh) {
        free(sh);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t j = 0; j < lc->nlisten * r->n; j++) pn->fds[j] = -1;
    if (rep_for(r, lc, err, errlen) < 0) {
        free(sh);
        return -1;
    }
    if (worker_shared_init(sh, lc, err, errlen) < 0) {
        free(sh);
        return -1;
    }
    pn->sh = sh;
    for (size_t j = 0; j < lc->nlisten; j++) {
        if (cfg_diff_address_held(old, r->nlive, retire, &lc->listen[j])) continue;
        if (sock_listen_group(&lc->listen[j], (int)lc->backlog, r->n, &pn->fds[j * r->n], &lc->listen[j], err,
                              errlen) < 0)
            return -1;
    }
    return 0;
}

/* Why a listener cannot be added or changed by a reload, or NULL. */
static const char *cannot_set_up(const struct listener_cfg *lc)
{
    /* Their files and writer threads are opened once, at start (stage/tap.h). */
    if (lc->capture_path[0]) return "--capture";
    if (lc->hexdump) return "--hexdump";
    return NULL;
}

/* ---- the reload ---- */

struct outcome {
    struct cfg_diff d;
    char files[512];                 /* what was read again */
};

static void describe_files(const struct reload *r, const struct gen *g, char *out, size_t outlen)
{
    static const char *const named[] = { "--users-file", "--password-file", "--filter", "-c", "--config" };
    size_t used;
    unsigned files = 0;
    if (g->cfg->config_path) {
        snprintf(out, outlen, "%s", g->cfg->config_path);
        return;
    }
    used = (size_t)snprintf(out, outlen, "the command line");
    for (int i = 1; i < r->argc && used < outlen; i++) {
        for (size_t k = 0; k < sizeof(named) / sizeof(named[0]) && used < outlen; k++) {
            size_t len = strlen(named[k]);
            const char *a = r->argv[i], *val = NULL;
            if (strcmp(a, named[k]) == 0 && i + 1 < r->argc) val = r->argv[i + 1];
            else if (strncmp(a, named[k], len) == 0 && a[len] == '=') val = a + len + 1;
            if (val)
                used += (size_t)snprintf(out + used, outlen - used, "%s %s %s", files++ ? "," : " and its files:",
                                         named[k], val);
        }
    }
    if (!files && used < outlen) snprintf(out + used, outlen - used, " (it names no file)");
}

/* Applies g (its listeners diffed in o->d) to the workers. 0, or -1 with
 * err and nothing changed. */
static int apply(struct reload *r, struct gen *g, const struct listener_cfg *const *old, struct outcome *o,
                 char *err, size_t errlen)
{
    struct plan p = { .n = r->n, .drain_ms = r->first->cfg->drain_timeout_ms };
    size_t nnew = g->cfg->nlisteners, nold = r->nlive;
    int rc = -1;
    p.add = calloc(nnew + 1, sizeof(*p.add));
    p.old = calloc(r->nlive + 1, sizeof(struct retiree *));
    struct live *live = calloc(nnew + 1, sizeof(*live));
    struct retiree **rts = calloc(r->nlive + 1, sizeof(struct retiree *));
    if (!p.add || !p.old || !live || !rts) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < r->nlive; k++) {
        if (!o->d.retire[k]) continue;
        if (!(rts[p.nold] = calloc(1, sizeof(**rts)))) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        rts[p.nold]->l = r->live[k];
        rts[p.nold]->left = r->n;
        p.old[p.nold] = rts[p.nold];
        p.nold++;
    }
    for (size_t i = 0; i < nnew; i++) {
        if (o->d.what[i] == CFG_KEPT) continue;
        if (plan_listener(r, &p, old, o->d.retire, &g->cfg->listeners[i], err, errlen) < 0) goto out;
    }
    wcmd_run_all(queue_at, r->ws, r->n, prepare_cmd, &p);
    if (p.failed) {         /* wcmd_run_all's lock orders the workers' writes before this */
        snprintf(err, errlen, "%s", p.err);
        wcmd_run_all(queue_at, r->ws, r->n, abort_cmd, &p);
        goto out;
    }
    wcmd_run_all(queue_at, r->ws, r->n, commit_cmd, &p);   /* cannot fail */
    /* The running set: kept listeners as they were, the others new. */
    for (size_t i = 0, a = 0; i < nnew; i++) {
        if (o->d.what[i] == CFG_KEPT) {
            live[i] = r->live[o->d.old_idx[i]];
            continue;
        }
        live[i] = (struct live){ p.add[a].lc, p.add[a].sh, g, 1 };
        p.add[a++].sh = NULL;        /* the workers' now */
        g->refs++;
    }
    for (size_t k = 0; k < p.nold; k++) {
        struct retiree *rt = rts[k];
        if (!rt) continue;           /* cannot be: made above */
        rt->next = r->retirees;
        r->retirees = rt;
        rts[k] = NULL;
    }
    free(r->live);
    r->live = live;
    r->nlive = nnew;
    live = NULL;
    rc = 0;
out:
    plan_free(&p);         /* closes the sockets no worker took */
    for (size_t k = 0; rts && k < nold; k++) free(rts[k]);   /* those not handed on */
    free(rts);
    free(live);
    return rc;
}

/* Loads, checks and diffs; NULL with err ("" if already logged). */
static struct gen *prepare(struct reload *r, const struct listener_cfg ***old, struct outcome *o, char *err,
                           size_t errlen)
{
    struct gen *g = gen_load(r, err, errlen);
    if (!g) return NULL;
    const char *opt = cfg_global_change(r->first->cfg, g->cfg);
    if (opt) {
        snprintf(err, errlen, "%s cannot change on reload: restart ferry to apply it", opt);
        goto fail;
    }
    size_t nnew = g->cfg->nlisteners;
    *old = calloc(r->nlive + 1, sizeof(const struct listener_cfg *));
    o->d.what = calloc(nnew + 1, sizeof(*o->d.what));
    o->d.old_idx = calloc(nnew + 1, sizeof(*o->d.old_idx));
    o->d.retire = calloc(r->nlive + 1, 1);
    if (!*old || !o->d.what || !o->d.old_idx || !o->d.retire) goto oom;
    for (size_t k = 0; k < r->nlive; k++) (*old)[k] = r->live[k].lc;
    if (cfg_diff_listeners(*old, r->nlive, g->cfg->listeners, nnew, &o->d) < 0) goto oom;
    for (size_t i = 0; i < nnew; i++) {
        const char *why = o->d.what[i] == CFG_KEPT ? NULL : cannot_set_up(&g->cfg->listeners[i]);
        if (why) {
            snprintf(err, errlen, "listener %s: a listener with %s cannot be %s by a reload yet: restart ferry",
                     g->cfg->listeners[i].name, why, o->d.what[i] == CFG_ADDED ? "added" : "changed");
            goto fail;
        }
    }
    return g;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    gen_free(r, g);
    return NULL;
}

static void announce(const struct reload *r, const struct gen *g, const struct outcome *o)
{
    char line[2048];
    if (!log_enabled(LOG_ERROR)) return;
    for (size_t i = 0; i < g->cfg->nlisteners; i++) {
        if (o->d.what[i] == CFG_KEPT) continue;
        cfg_describe_listener(&g->cfg->listeners[i], r->n, line, sizeof(line));
        log_plain("%s%s", o->d.what[i] == CFG_ADDED ? "added: " : "changed: ", line);
    }
}

int reload_run(struct reload *r, const char *sig)
{
    char err[512];
    const struct listener_cfg **old = NULL;
    struct outcome o;
    memset(&o, 0, sizeof(o));
    if (!r) snprintf(err, sizeof(err), "out of memory at start");
    else if (r->first->cfg->has_api)
        snprintf(err, sizeof(err), "--api: reloading alongside the HTTP API is not supported yet "
                 "(its proxies and the config's listeners would have two owners): restart ferry to apply changes");
    struct gen *g = r && !r->first->cfg->has_api ? prepare(r, &old, &o, err, sizeof(err)) : NULL;
    if (g) describe_files(r, g, o.files, sizeof(o.files));
    if (g && apply(r, g, old, &o, err, sizeof(err)) < 0) {
        gen_free(r, g);
        g = NULL;
    }
    if (g) {
        g->next = r->gens;
        r->gens = g;
        r->cur = g;
        announce(r, g, &o);
        if (log_enabled(LOG_ERROR))
            log_plain("%s: reloaded %s: listeners added %zu, removed %zu, changed %zu, kept %zu", sig, o.files,
                      o.d.added, o.d.removed, o.d.changed, o.d.kept);
    } else if (log_enabled(LOG_ERROR)) {
        log_plain("%s: reload failed%s%s; still running the old configuration", sig, err[0] ? ": " : "", err);
    }
    free(old);
    free(o.d.what);
    free(o.d.old_idx);
    free(o.d.retire);
    reload_reap(r);
    return g ? 0 : -1;
}

void reload_reap(struct reload *r)
{
    if (!r) return;
    for (struct retiree **pp = &r->retirees; *pp;) {
        struct retiree *rt = *pp;
        if (__atomic_load_n(&rt->left, __ATOMIC_ACQUIRE)) {
            pp = &rt->next;
            continue;
        }
        *pp = rt->next;
        if (log_enabled(LOG_INFO))
            log_msg(LOG_INFO, "listener=%s retired: its sessions of before the reload are over", rt->l.lc->name);
        worker_shared_free(rt->l.sh);       /* every worker has detached it */
        if (rt->l.sh_own) free(rt->l.sh);
        else rt->l.sh->freed = 1;
        rt->l.gen->refs--;
        free(rt);
    }
    for (struct gen **pp = &r->gens; *pp;) {
        struct gen *g = *pp;
        if (g->refs || g == r->cur || g == r->first) {
            pp = &g->next;
            continue;
        }
        *pp = g->next;
        gen_free(r, g);
    }
}

size_t reload_listeners(const struct reload *r, const struct listener_cfg **out, size_t max)
{
    for (size_t i = 0; i < r->nlive && i < max; i++) out[i] = r->live[i].lc;
    return r->nlive;
}

struct reload *reload_new(struct ferry_cfg *cfg, int argc, char **argv, struct server_worker *ws, unsigned n)
{
    struct reload *r = calloc(1, sizeof(*r));
    struct gen *g = calloc(1, sizeof(*g));
    if (!r || !g || !(r->live = calloc(cfg->nlisteners + 1, sizeof(*r->live)))) goto fail;
    r->ws = ws;
    r->n = n;
    r->argc = argc;
    r->argv = argv;
    g->cfg = cfg;
    r->gens = r->first = r->cur = g;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (cfg->listeners[i].replay && rep_add(r, cfg->listeners[i].replay) < 0) goto fail;
        r->live[i] = (struct live){ ws[0].listeners[i].cfg, ws[0].listeners[i].sh, g, 0 };
        g->refs++;
    }
    r->nlive = cfg->nlisteners;
    sum_filters(cfg);
    return r;
fail:
    if (r) free(r->reps);
    if (r) free(r->live);
    free(r);
    free(g);
    return NULL;
}

void reload_free(struct reload *r)
{
    if (!r) return;
    while (r->retirees) {
        struct retiree *rt = r->retirees;
        r->retirees = rt->next;
        if (rt->l.sh_own) {        /* the workers' array ones went with the workers */
            worker_shared_free(rt->l.sh);
            free(rt->l.sh);
        }
        free(rt);
    }
    for (size_t i = 0; i < r->nlive; i++) {
        if (!r->live[i].sh_own) continue;
        worker_shared_free(r->live[i].sh);
        free(r->live[i].sh);
    }
    while (r->gens) {
        struct gen *g = r->gens;
        r->gens = g->next;
        if (g == r->first) {
            gen_drop_replays(r, g);   /* the caller frees the rest */
            free(g);
        } else {
            gen_free(r, g);
        }
    }
    free(r->live);
    free(r->reps);
    free(r);
}
