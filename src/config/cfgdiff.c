/* cfgdiff.c - see cfgdiff.h. */
#include "config/cfgdiff.h"

#include <stdlib.h>
#include <string.h>

#include "stage/toxic.h"

/* The pointers (and the run-time objects) out of a copy, so that memcmp
 * compares the values; what the pointers hold is compared apart. Padding
 * holds what it held: configs are zeroed when made, and a difference there
 * could only make a kept listener look changed (replaced), never the
 * reverse. */
static void scrub(struct listener_cfg *l)
{
    l->group = NULL;
    l->users = NULL;
    l->client_acl.rules = NULL;
    l->dest_acl.rules = NULL;
    l->ss_password = NULL;
    l->ss_key_b64 = NULL;
    l->replay = NULL;
    l->capture = NULL;
    l->hexlog = NULL;
    l->toxics = NULL;
    l->rewrite.rules = NULL;
}

static int same_bytes(const void *a, const void *b, size_t len)
{
    return len == 0 || (a && b && memcmp(a, b, len) == 0);
}

static int same_users(const struct listener_cfg *a, const struct listener_cfg *b)
{
    for (size_t i = 0; i < a->nusers; i++) {
        const struct user_cfg *x = &a->users[i], *y = &b->users[i];
        if (x->name_len != y->name_len || x->pass_len != y->pass_len || !same_bytes(x->name, y->name, x->name_len) ||
            !same_bytes(x->pass, y->pass, x->pass_len))
            return 0;
    }
    return 1;
}

static int same_group(const struct upstream_group_cfg *a, const struct upstream_group_cfg *b)
{
    if (!a || !b) return a == b;
    /* Padding: see scrub(). NOLINTNEXTLINE(bugprone-suspicious-memory-comparison,cert-exp42-c,cert-flp37-c) */
    return memcmp(a, b, sizeof(*a)) == 0;
}

/* Only the fields scrub() leaves: counts are compared with the rest. */
static int same_pointees(const struct listener_cfg *a, const struct listener_cfg *b)
{
    return same_users(a, b) && same_group(a->group, b->group) &&
           same_bytes(a->client_acl.rules, b->client_acl.rules, a->client_acl.n * sizeof(*a->client_acl.rules)) &&
           same_bytes(a->dest_acl.rules, b->dest_acl.rules, a->dest_acl.n * sizeof(*a->dest_acl.rules)) &&
           same_bytes(a->toxics, b->toxics, a->ntoxics * sizeof(*a->toxics)) &&
           same_bytes(a->rewrite.rules, b->rewrite.rules, a->rewrite.n * sizeof(*a->rewrite.rules));
}

int cfg_listener_same(const struct listener_cfg *a, const struct listener_cfg *b)
{
    /* Two copies of a large struct: on the heap, not the stack. */
    struct listener_cfg *x = malloc(2 * sizeof(*x));
    if (!x) return 0;            /* "changed": a reload replaces it, which is always correct */
    x[0] = *a;
    x[1] = *b;
    scrub(&x[0]);
    scrub(&x[1]);
    /* Padding: see scrub(). NOLINTNEXTLINE(bugprone-suspicious-memory-comparison,cert-exp42-c,cert-flp37-c) */
    int same = memcmp(&x[0], &x[1], sizeof(*x)) == 0 && same_pointees(a, b);
    explicit_bzero(x, 2 * sizeof(*x));   /* keys */
    free(x);
    return same;
}

const char *cfg_global_change(const struct ferry_cfg *a, const struct ferry_cfg *b)
{
    if (a->threads != b->threads) return "--threads";
    if (a->global_maxconn != b->global_maxconn) return "--global-maxconn";
    if (a->log_level != b->log_level) return "--log-level";
    if (a->log_format != b->log_format) return "--log-format";
    if (a->log_sessions != b->log_sessions) return "--log-sessions";
    if (strcmp(a->log_file, b->log_file) != 0) return "--log-file";
    if (strcmp(a->syslog_target, b->syslog_target) != 0) return "--syslog";
    if (a->syslog_facility != b->syslog_facility) return "--syslog-facility";
    if (strcmp(a->syslog_tag, b->syslog_tag) != 0) return "--syslog-tag";
    if (a->drain_timeout_ms != b->drain_timeout_ms) return "--drain-timeout";
    if (strcmp(a->run_as, b->run_as) != 0) return "--run-as";
    if (strcmp(a->run_as_group, b->run_as_group) != 0) return "--run-as-group";
    if (strcmp(a->chroot_dir, b->chroot_dir) != 0) return "--chroot";
    if (a->has_api != b->has_api || a->api_open != b->api_open ||
        (a->has_api && !net_addr_equal(&a->api_addr, &b->api_addr)))
        return "--api";
    if (a->has_metrics != b->has_metrics || a->metrics_open != b->metrics_open ||
        (a->has_metrics && !net_addr_equal(&a->metrics_addr, &b->metrics_addr)))
        return "--metrics";
    if (a->metrics_users != b->metrics_users) return "--metrics-users";
    return NULL;
}

static long find_name(const struct listener_cfg *const *old, size_t nold, const char *name)
{
    for (size_t i = 0; i < nold; i++)
        if (strcmp(old[i]->name, name) == 0) return (long)i;
    return -1;
}

int cfg_diff_listeners(const struct listener_cfg *const *old, size_t nold, const struct listener_cfg *nw,
                       size_t nnew, struct cfg_diff *d)
{
    unsigned char *seen = calloc(nold ? nold : 1, 1);
    if (!seen) return -1;
    d->added = d->removed = d->changed = d->kept = 0;
    for (size_t i = 0; i < nnew; i++) {
        long k = find_name(old, nold, nw[i].name);
        d->old_idx[i] = k;
        if (k < 0) {
            d->what[i] = CFG_ADDED;
            d->added++;
            continue;
        }
        seen[k] = 1;
        d->what[i] = cfg_listener_same(old[k], &nw[i]) ? CFG_KEPT : CFG_CHANGED;
        if (d->what[i] == CFG_KEPT) d->kept++;
        else d->changed++;
    }
    for (size_t k = 0; k < nold; k++) {
        d->retire[k] = !seen[k];
        if (!seen[k]) d->removed++;
    }
    for (size_t i = 0; i < nnew; i++)
        if (d->what[i] == CFG_CHANGED) d->retire[d->old_idx[i]] = 1;
    free(seen);
    return 0;
}

int cfg_diff_address_held(const struct listener_cfg *const *old, size_t nold, const unsigned char *retire,
                          const struct net_addr *a)
{
    for (size_t k = 0; k < nold; k++) {
        if (!retire[k]) continue;
        for (size_t j = 0; j < old[k]->nlisten; j++)
            if (net_addr_equal(&old[k]->listen[j], a)) return 1;
    }
    return 0;
}

uint64_t cfg_content_sum(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
