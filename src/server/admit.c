/* admit.c - see admit.h. */
#include "server/admit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/loop.h"
#include "obs/log.h"
#include "obs/metrics.h"

static unsigned global_sessions;   /* atomic: sessions of every listener */

unsigned admit_sessions_open(void)
{
    return __atomic_load_n(&global_sessions, __ATOMIC_ACQUIRE);
}

int admit_shared_init(struct listener_shared *sh, const struct listener_cfg *cfg, char *err, size_t errlen)
{
    uint8_t key[LIMITS_KEY_LEN];
    /* A secret hash key, so clients cannot aim at one hash chain. */
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        return -1;
    }
    pthread_mutex_init(&sh->lock, NULL);
    if (cfg->maxconn_per_ip) {
        /* Every counted IP holds at least one open socket, so the open-files
         * limit bounds how many can be counted at once. */
        struct rlimit rl;
        size_t max_ips = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < LIMITS_MAX_IPS ? rl.rlim_cur : 1u << 20;
        if (max_ips < 1024) max_ips = 1024;
        if (ipcount_init(&sh->ipc, max_ips, 64, key, err, errlen) < 0) return -1;
        sh->has_ipc = 1;
    }
    if (cfg->rate_per_ip) {
        uint32_t burst = cfg->rate_burst ? cfg->rate_burst : cfg->rate_per_ip;
        if (rate_init(&sh->rate, cfg->rate_per_ip, burst, 1u << 16, 64, key, err, errlen) < 0) return -1;
        sh->has_rate = 1;
    }
    return 0;
}

void admit_shared_free(struct listener_shared *sh)
{
    if (sh->has_ipc) ipcount_free(&sh->ipc);
    if (sh->has_rate) rate_free(&sh->rate);
    sh->has_ipc = sh->has_rate = 0;
    pthread_mutex_destroy(&sh->lock);
}

static int in_hours(const struct timewin *w)
{
    struct tm tm;
    time_t now;
    if (w->n == 0) return 1;
    now = time(NULL);
    localtime_r(&now, &tm);
    return timewin_allows(w, (unsigned)(tm.tm_hour * 60 + tm.tm_min));
}

static int client_allowed(const struct listener_cfg *cfg, const struct net_addr *peer)
{
    size_t len;
    const uint8_t *ip = net_addr_ip(peer, &len);
    return cfg->client_acl.n == 0 || acl_check_addr(&cfg->client_acl, len == 4 ? 4 : 6, ip);
}

int admit_proxy_source(const struct listener_cfg *cfg, const struct net_addr *peer)
{
    size_t len;
    const uint8_t *ip = net_addr_ip(peer, &len);
    return cfg->proxy_from.n == 0 || acl_check_addr(&cfg->proxy_from, len == 4 ? 4 : 6, ip);
}

/* Takes one from an atomic counter unless it is at max (0 = no limit). */
static int take_slot(unsigned *counter, unsigned max)
{
    unsigned n = __atomic_add_fetch(counter, 1, __ATOMIC_ACQ_REL);
    if (max && n > max) {
        __atomic_sub_fetch(counter, 1, __ATOMIC_ACQ_REL);
        return 0;
    }
    return 1;
}

/* Per-IP checks under the listener's lock: rate first (a refused attempt
 * still spends a token, as in any token bucket), then the count. */
static const char *admit_ip(struct wlistener *wl, const struct net_addr *peer, int *counted_ip)
{
    struct listener_shared *sh = wl->sh;
    const char *why = NULL;
    size_t len;
    const uint8_t *ip = net_addr_ip(peer, &len);
    if (!sh->has_rate && !sh->has_ipc) return NULL;
    pthread_mutex_lock(&sh->lock);
    if (sh->has_rate && !rate_allow(&sh->rate, ip, len, clock_now_ms())) why = "rate_per_ip";
    else if (sh->has_ipc) {
        int n = ipcount_inc(&sh->ipc, ip, len);
        if (n < 0 || (unsigned)n > wl->cfg->maxconn_per_ip) {
            if (n >= 0) ipcount_dec(&sh->ipc, ip, len);
            why = "maxconn_per_ip";
        } else {
            *counted_ip = 1;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return why;
}

static void admit_release_ip(struct wlistener *wl, const struct net_addr *peer)
{
    size_t len;
    const uint8_t *ip = net_addr_ip(peer, &len);
    pthread_mutex_lock(&wl->sh->lock);
    ipcount_dec(&wl->sh->ipc, ip, len);
    pthread_mutex_unlock(&wl->sh->lock);
}

const char *admit_client(struct wlistener *wl, const struct net_addr *peer, int *counted_ip)
{
    const struct listener_cfg *cfg = wl->cfg;
    const char *why;
    *counted_ip = 0;
    if (!client_allowed(cfg, peer)) return "denied";
    if (!in_hours(&cfg->hours)) return "hours";
    if ((why = admit_ip(wl, peer, counted_ip))) return why;
    if (!take_slot(&global_sessions, wl->w->cfg->global_maxconn)) why = "global_maxconn";
    else if (!take_slot(&wl->sh->sessions, cfg->maxconn)) {
        __atomic_sub_fetch(&global_sessions, 1, __ATOMIC_ACQ_REL);
        why = "maxconn";
    }
    if (why && *counted_ip) {
        admit_release_ip(wl, peer);
        *counted_ip = 0;
    }
    return why;
}

void admit_release(struct wlistener *wl, const struct net_addr *peer, int counted_ip)
{
    __atomic_sub_fetch(&global_sessions, 1, __ATOMIC_ACQ_REL);
    __atomic_sub_fetch(&wl->sh->sessions, 1, __ATOMIC_ACQ_REL);
    if (counted_ip) admit_release_ip(wl, peer);
}

/* A refused SOCKS client is told so in its protocol, which takes its first
 * byte (the version). Usually it is already there; if not, the fd is held
 * for at most REFUSE_WAIT_MS, by at most REFUSE_MAX_HELD in the whole
 * process (one counter for all workers) so a flood of refused clients costs
 * almost nothing, then closed. */
#define REFUSE_WAIT_MS 500
#define REFUSE_MAX_HELD 1024

struct refusal {
    struct loop_io io;
    struct loop_timer timer;
    struct server_worker *w;
    struct refusal *prev, *next;     /* worker's list, closed at shutdown */
};

static unsigned refusals_held;   /* per process; only an approximate cap */

/* 1 when answered (or the client is gone), 0 when its first byte is not here yet. */
static int socks_refusal(int fd)
{
    static const uint8_t no_method[2] = { 5, 0xFF };
    static const uint8_t rejected4[8] = { 0, 0x5B, 0, 0, 0, 0, 0, 0 };
    uint8_t first;
    ssize_t n = recv(fd, &first, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n == 1 && first == 5) (void)!send(fd, no_method, sizeof(no_method), MSG_NOSIGNAL | MSG_DONTWAIT);
    else if (n == 1 && first == 4) (void)!send(fd, rejected4, sizeof(rejected4), MSG_NOSIGNAL | MSG_DONTWAIT);
    return 1;
}

static void refusal_end(struct loop *l, struct refusal *r)
{
    if (r->prev) r->prev->next = r->next;
    else r->w->refusals = r->next;
    if (r->next) r->next->prev = r->prev;
    loop_timer_cancel(l, &r->timer);
    loop_io_close(l, &r->io);
    __atomic_sub_fetch(&refusals_held, 1, __ATOMIC_RELAXED);
    loop_defer_free(l, r, free);
}

static void refusal_io(struct loop *l, struct loop_io *io, uint32_t events)
{
    (void)events;
    struct refusal *r = io->owner;
    if (socks_refusal(io->fd)) refusal_end(l, r);
}

static void refusal_timeout(struct loop *l, struct loop_timer *t)
{
    refusal_end(l, t->owner);
}

/* Holds fd until its first byte arrives; 0, or -1 if it could not. */
static int hold_for_refusal(struct wlistener *wl, int fd)
{
    struct loop *l = wl->w->rw.loop;
    if (__atomic_add_fetch(&refusals_held, 1, __ATOMIC_RELAXED) > REFUSE_MAX_HELD) goto no;
    struct refusal *r = calloc(1, sizeof(*r));
    if (!r) goto no;
    loop_timer_init(&r->timer, refusal_timeout, r);
    if (loop_io_add(l, &r->io, fd, LOOP_READ, refusal_io, r) < 0) {
        free(r);
        goto no;
    }
    loop_timer_arm_in(l, &r->timer, REFUSE_WAIT_MS);
    r->w = wl->w;
    r->next = wl->w->refusals;
    if (r->next) r->next->prev = r;
    wl->w->refusals = r;
    return 0;
no:
    __atomic_sub_fetch(&refusals_held, 1, __ATOMIC_RELAXED);
    return -1;
}

/* admit_client()'s reason as the metrics' refusal reason. */
static enum metrics_refuse refuse_reason(const char *limit)
{
    if (strcmp(limit, "denied") == 0) return MREF_ACL;
    if (strcmp(limit, "hours") == 0) return MREF_TIME_WINDOW;
    if (strcmp(limit, "rate_per_ip") == 0) return MREF_RATE;
    return MREF_LIMIT;
}

void admit_refuse(struct wlistener *wl, int fd, const struct net_addr *peer, const char *limit)
{
    char c[NET_ADDR_STRLEN];
    metrics_refused(wl->sh->relay.metrics, refuse_reason(limit));
    if (!cfg_socks_front(wl->cfg) || socks_refusal(fd) || hold_for_refusal(wl, fd) < 0) close(fd);
    if (!log_enabled(LOG_INFO)) return;
    int acl = strcmp(limit, "denied") == 0;
    log_msg(LOG_INFO, "sess=- listener=%s client=%s upstream=- up=0 down=0 dur_ms=0 end=%s%s%s",
            wl->cfg->name, net_addr_format(peer, c, sizeof(c)), acl ? "denied" : "limit",
            acl ? "" : " limit=", acl ? "" : limit);
}

void admit_close_all(struct server_worker *w)
{
    while (w->refusals) refusal_end(w->rw.loop, w->refusals);
}
