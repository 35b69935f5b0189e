/* balancer.c - see balancer.h.
 *
 * Why rendezvous hashing for `source`: every server scores the client with
 * its own hash and the best score wins. Removing a server only reassigns the
 * clients it was winning, adding one only takes the clients it now wins (an
 * expected w/W share), exactly, with no table to build, no memory per group,
 * and nothing to rebuild when a server goes down or is excluded: the runner-
 * up takes over, and runners-up are spread over all servers in proportion to
 * their weights. A hash ring needs ~100+ virtual points per server (and per
 * weight unit) to get within ~10% of fair shares, and its memory must be
 * rebuilt on weight changes; Maglev balances well but moves a few clients of
 * other servers on every change. The price is n hashes per pick, n <= 64,
 * paid once per connection.
 *
 * Weights use the logarithmic method (Schindelhauer and Schomaker, "Weighted
 * distributed hash tables", 2005): score = w / -ln(u), u uniform in (0,1)
 * from the hash. -ln(u) is an Exp(1) sample, so server i wins with
 * probability exactly w_i / sum(w). ln is computed here (atanh series)
 * because the library is linked without libm.
 */
#include "upstream/balancer.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define BIT(i) (1ULL << (i))

static int weight_of(const struct lb_server *s)
{
    return s->weight > 0 ? s->weight : 1;
}

static unsigned threshold(unsigned v)
{
    return v ? v : 1;
}

/* Stafford's mix13, the splitmix64 finaliser: a bijection whose output bits
 * each depend on every input bit. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t hash_bytes(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;          /* FNV-1a, then mixed */
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return mix64(h ^ len);
}

/* ---- smooth weighted round robin (nginx) ---- */

/* Every candidate gains its weight, the highest score wins (lowest index on
 * ties) and pays back the candidates' total, so over a period of sum(w)
 * picks each server wins exactly w times, spread out. mask != 0. */
static int swrr(struct lb_group *g, uint64_t mask)
{
    int best = -1, total = 0;
    for (uint64_t m = mask; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        struct lb_server *s = &g->servers[i];
        s->current += weight_of(s);
        total += weight_of(s);
        if (best < 0 || s->current > g->servers[best].current) best = i;
    }
    g->servers[best].current -= total;
    return best;
}

static int rr_pick(struct lb_group *g, uint64_t eligible, const uint8_t *ip, size_t iplen)
{
    (void)ip;
    (void)iplen;
    return swrr(g, eligible);
}

/* ---- least connections ---- */

/* <0, 0, >0 as a's active/weight is below, equal to, above b's. */
static int load_cmp(const struct lb_server *a, const struct lb_server *b)
{
    uint64_t la = (uint64_t)a->active * (uint64_t)weight_of(b);
    uint64_t lb = (uint64_t)b->active * (uint64_t)weight_of(a);
    return la < lb ? -1 : la > lb;
}

static int leastconn_pick(struct lb_group *g, uint64_t eligible, const uint8_t *ip, size_t iplen)
{
    uint64_t ties = 0;
    int best = -1;
    (void)ip;
    (void)iplen;
    for (uint64_t m = eligible; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        int c = best < 0 ? -1 : load_cmp(&g->servers[i], &g->servers[best]);
        if (c < 0) {
            best = i;
            ties = BIT(i);
        } else if (c == 0) {
            ties |= BIT(i);
        }
    }
    /* Equally loaded servers take turns by weight, so that with no sessions
     * held (short connections) leastconn still spreads like round robin. */
    return (ties & (ties - 1)) ? swrr(g, ties) : best;
}

/* ---- source: weighted rendezvous hashing ---- */

/* -ln(u) for u = (top 52 bits of h + 0.5) / 2^52: exactly representable and
 * strictly inside (0,1), so the result is > 0 and finite. Scaling by 2 is
 * exact, and ln(x) = 2 atanh((x-1)/(x+1)) with |s| <= 1/3 converges to
 * ~1e-12 in 11 terms; x - 1 is exact near 1, where the winners are, so the
 * small results keep their relative precision. */
static double neg_ln_unit(uint64_t h)
{
    double x = ((double)(h >> 12) + 0.5) / 4503599627370496.0;
    double halvings = 0, sum = 0;
    while (x < 0.5) {
        x *= 2;
        halvings += 1;
    }
    double s = (x - 1) / (x + 1), s2 = s * s, p = s;
    for (int k = 1; k <= 21; k += 2) {
        sum += p / k;
        p *= s2;
    }
    return halvings * 0.69314718055994530942 - 2 * sum;
}

static uint64_t server_key(const struct lb_group *g, int i)
{
    return g->servers[i].key ? g->servers[i].key : (uint64_t)i + 1;
}

static int source_pick(struct lb_group *g, uint64_t eligible, const uint8_t *ip, size_t iplen)
{
    static const uint8_t v4mapped[12] = { [10] = 0xff, [11] = 0xff };
    if (!ip || (iplen != 4 && iplen != 16)) return swrr(g, eligible);
    if (iplen == 16 && memcmp(ip, v4mapped, 12) == 0) {
        ip += 12;                   /* ::ffff:a.b.c.d is client a.b.c.d */
        iplen = 4;
    }
    uint64_t hc = hash_bytes(ip, iplen);
    double best_score = -1;
    int best = -1;
    for (uint64_t m = eligible; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        uint64_t h = mix64(hc ^ mix64(server_key(g, i)));
        double score = weight_of(&g->servers[i]) / neg_ln_unit(h);
        if (score > best_score) {
            best_score = score;
            best = i;
        }
    }
    return best;
}

/* ---- random2: power of two choices ---- */

static uint64_t rng_next(struct lb_group *g)
{
    g->rng += 0x9e3779b97f4a7c15ULL;             /* splitmix64 */
    return mix64(g->rng);
}

/* One server of mask (!= 0), with probability proportional to weight. The
 * modulo bias is below total / 2^64, i.e. nil. */
static int weighted_draw(struct lb_group *g, uint64_t mask)
{
    uint64_t total = 0, r;
    int i = -1;
    for (uint64_t m = mask; m; m &= m - 1)
        total += (uint64_t)weight_of(&g->servers[__builtin_ctzll(m)]);
    /* cppcheck-suppress zerodiv ; total >= 1: mask != 0 (lb_choose checks) and weights >= 1 */
    r = rng_next(g) % total;   /* NOLINT(clang-analyzer-core.DivideZero): see the line above */
    for (uint64_t m = mask; m; m &= m - 1) {
        i = __builtin_ctzll(m);
        uint64_t w = (uint64_t)weight_of(&g->servers[i]);
        if (r < w) break;
        r -= w;
    }
    return i;
}

/* Two distinct weighted draws; the lighter by active/weight wins, the first
 * on a tie, so with nothing held the shares are the weights. */
static int random2_pick(struct lb_group *g, uint64_t eligible, const uint8_t *ip, size_t iplen)
{
    (void)ip;
    (void)iplen;
    int a = weighted_draw(g, eligible);
    if (!(eligible & ~BIT(a))) return a;
    int b = weighted_draw(g, eligible & ~BIT(a));
    return load_cmp(&g->servers[b], &g->servers[a]) < 0 ? b : a;
}

/* None of the built-in algorithms keeps state that a release must undo. */
const struct lb_ops lb_roundrobin = { "roundrobin", rr_pick, NULL };
const struct lb_ops lb_leastconn = { "leastconn", leastconn_pick, NULL };
const struct lb_ops lb_source = { "source", source_pick, NULL };
const struct lb_ops lb_random2 = { "random2", random2_pick, NULL };

static const struct lb_ops *const all_ops[] = { &lb_roundrobin, &lb_leastconn, &lb_source,
                                                &lb_random2 };

const struct lb_ops *lb_ops_find(const char *name)
{
    for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++)
        if (strcmp(all_ops[i]->name, name) == 0) return all_ops[i];
    return NULL;
}

int lb_group_init(struct lb_group *g, struct lb_server *servers, size_t n, const char *algo,
                  char *err, size_t errlen)
{
    const struct lb_ops *ops = algo ? lb_ops_find(algo) : &lb_roundrobin;
    if (!ops) {
        snprintf(err, errlen, "balance '%.40s': expected roundrobin, leastconn, source or random2",
                 algo);
        return -1;
    }
    if (n > LB_MAX_SERVERS) {
        snprintf(err, errlen, "%zu upstream servers: at most %d", n, LB_MAX_SERVERS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (servers[i].weight < 1) {
            snprintf(err, errlen, "upstream %zu: weight %d must be >= 1", i + 1, servers[i].weight);
            return -1;
        }
    }
    memset(g, 0, sizeof(*g));
    g->servers = servers;
    g->n = n;
    g->ops = ops;
    g->rise = 2;
    g->fall = 3;
    return 0;
}

void lb_group_seed(struct lb_group *g, uint64_t seed)
{
    g->rng = seed;
}

uint64_t lb_key(const char *name)
{
    uint64_t h = hash_bytes((const uint8_t *)name, strlen(name));
    return h ? h : 1;
}

/* Eligible servers: primaries if any is eligible, else backups. *full tells
 * whether an up, non-excluded server was skipped only for its maxconn. */
static uint64_t eligible_mask(const struct lb_group *g, uint64_t exclude, int *full)
{
    uint64_t primary = 0, backup = 0;
    size_t n = g->n < LB_MAX_SERVERS ? g->n : LB_MAX_SERVERS;
    *full = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lb_server *s = &g->servers[i];
        if ((exclude & BIT(i)) || s->down || s->off) continue;
        if (s->maxconn && s->active >= s->maxconn) {
            *full = 1;
            continue;
        }
        if (s->backup) backup |= BIT(i);
        else primary |= BIT(i);
    }
    return primary ? primary : backup;
}

int lb_choose(struct lb_group *g, uint64_t exclude, const uint8_t *ip, size_t iplen)
{
    int full;
    uint64_t mask = eligible_mask(g, exclude, &full);
    if (!mask) return full ? LB_FULL : LB_NONE;
    const struct lb_ops *ops = g->ops ? g->ops : &lb_roundrobin;
    int idx = ops->pick(g, mask, ip, iplen);
    g->servers[idx].active++;
    return idx;
}

int lb_pick(struct lb_group *g, unsigned long long exclude)
{
    int idx = lb_choose(g, exclude, NULL, 0);
    return idx >= 0 ? idx : -1;
}

static unsigned sat_inc(unsigned v)
{
    return v < UINT_MAX ? v + 1 : v;
}

static void mark_down(struct lb_server *s)
{
    s->down = 1;
    s->hc_ok = 0;
}

int lb_release(struct lb_group *g, int idx, int failed)
{
    if (idx < 0 || (size_t)idx >= g->n) return 0;
    struct lb_server *s = &g->servers[idx];
    int changed = 0;
    if (s->active) s->active--;
    if (!failed) {
        s->fails = 0;
    } else {
        s->fails = sat_inc(s->fails);
        if (g->passive && !s->down && s->fails >= threshold(g->fall)) {
            mark_down(s);
            changed = 1;
        }
    }
    if (g->ops && g->ops->release) g->ops->release(g, idx, failed);
    return changed;
}

void lb_connected(struct lb_group *g, int idx)
{
    if (idx >= 0 && (size_t)idx < g->n) g->servers[idx].fails = 0;
}

int lb_health_result(struct lb_group *g, int idx, int ok)
{
    if (idx < 0 || (size_t)idx >= g->n) return 0;
    struct lb_server *s = &g->servers[idx];
    if (ok) {
        s->hc_fail = 0;
        s->hc_ok = sat_inc(s->hc_ok);
        if (s->down && s->hc_ok >= threshold(g->rise)) {
            s->down = 0;
            s->fails = 0;
            return 1;
        }
    } else {
        s->hc_ok = 0;
        s->hc_fail = sat_inc(s->hc_fail);
        if (!s->down && s->hc_fail >= threshold(g->fall)) {
            mark_down(s);
            return 1;
        }
    }
    return 0;
}

int lb_set_up(struct lb_group *g, int idx, int up)
{
    if (idx < 0 || (size_t)idx >= g->n) return 0;
    struct lb_server *s = &g->servers[idx];
    int changed = (s->down != 0) == (up != 0);
    s->down = !up;
    s->fails = s->hc_ok = s->hc_fail = 0;
    return changed;
}

int lb_is_up(const struct lb_group *g, int idx)
{
    return idx >= 0 && (size_t)idx < g->n && !g->servers[idx].down;
}
