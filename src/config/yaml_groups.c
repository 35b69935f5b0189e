/* yaml_groups.c - upstream groups: `upstreams:` and a relay listener's
 * `upstream:` (a group name, or servers inline).
 *
 * A server's address and weight go through the option table's `upstream`
 * parser, so "HOST:PORT[,weight=N]" means the same as after -u. A group key
 * with a `twin` in the option table (retries, and balance once the table
 * has it) is applied to each listener of the group through that option,
 * unless the listener sets the option itself. Keys the engine does not
 * enforce yet are stored, and reported with a warning where they are set.
 */
#include "config/yaml_groups.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GRP(f) offsetof(struct upstream_group_cfg, f)
#define SRV(f) offsetof(struct upstream_cfg, f)
#define HC(f) offsetof(struct health_cfg, f)

const char *const yk_balance_names[] = { "roundrobin", "leastconn", "source", "random2", NULL };
static const char *const resolve_names[] = { "first", "all", NULL };

#define NOT_YET "accepted, not yet enforced"

const struct yk_def yk_group_keys[] = {
    { "servers", YK_CUSTOM, 0, 0, 0, NULL, NULL, NULL, NULL, "list of SERVER",
      "the group's servers: \"HOST:PORT[,weight=N]\" or a mapping (see server keys); required" },
    { "balance", YK_ENUM, GRP(balance), 0, 0, "roundrobin", yk_balance_names, "balance", NULL, "ALGO",
      "roundrobin (smooth weighted), leastconn, source, random2" },
    { "retries", YK_UINT, GRP(retries), 0, 16, NULL, NULL, "retries", NULL, "N",
      "other servers tried after a failed connect (default: the listener's, 2)" },
    { "health-check", YK_CUSTOM, GRP(health), 0, 0, NULL, NULL, NULL, NULL, "mapping",
      "active health checks (see health-check keys)" },
    { "resolve", YK_ENUM, GRP(resolve), 0, 0, "first", resolve_names, NULL, NULL, "first|all",
      "all: every address of each server's name is a server, followed as DNS changes (see server keys)" },
    { NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL },
};

const struct yk_def yk_server_keys[] = {
    { "address", YK_CUSTOM, 0, 0, 0, NULL, NULL, NULL, NULL, "HOST:PORT", "the server; required (or srv)" },
    { "srv", YK_CUSTOM, 0, 0, 0, NULL, NULL, NULL, NULL, "NAME",
      "instead of address: the servers of a DNS SRV record (_service._tcp.example), followed as it changes; "
      "lowest priority active, others backup, weights from the records" },
    { "resolve", YK_ENUM, SRV(resolve_all), 0, 0, NULL, resolve_names, NULL, NULL, "first|all",
      "all: every address of the name is a server, followed as DNS changes (default: the group's)" },
    { "weight", YK_UINT, SRV(weight), 1, 1000, "1", NULL, NULL, NULL, "N",
      "share of new connections, relative to the others" },
    { "backup", YK_BOOL, SRV(backup), 0, 1, "false", NULL, NULL, NULL, "BOOL",
      "use only when no primary server is available" },
    { "maxconn", YK_UINT, SRV(maxconn), 0, 10000000, "0", NULL, NULL, NULL, "N",
      "at most N sessions to this server per worker thread (0 = no limit)" },
    { NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL },
};

const struct yk_def yk_health_keys[] = {
    { "interval", YK_DURATION, HC(interval_ms), 100, 3600000, "2s", NULL, NULL, NULL, "DUR",
      "time between two checks of a server" },
    { "rise", YK_UINT, HC(rise), 1, 100, "2", NULL, NULL, NULL, "N",
      "consecutive passed checks that bring a server up" },
    { "fall", YK_UINT, HC(fall), 1, 100, "3", NULL, NULL, NULL, "N",
      "consecutive failed checks that take a server down" },
    { "timeout", YK_DURATION, HC(timeout_ms), 100, 3600000, NULL, NULL, NULL, NULL, "DUR",
      "a check (connect, send, expect) fails after this long (default: the interval, at most 2s)" },
    { "send", YK_STRING, HC(send), 0, sizeof(((struct health_cfg *)0)->send), NULL, NULL, NULL, NULL,
      "TEXT", "bytes to send after connecting (YAML escapes like \\r\\n work in double quotes)" },
    { "expect", YK_STRING, HC(expect), 0, sizeof(((struct health_cfg *)0)->expect), NULL, NULL, NULL,
      NULL, "TEXT", "text the answer must contain (default: connecting is enough)" },
    { NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL },
};

static void key_names(const struct yk_def *t, const char **out, size_t cap)
{
    size_t n = 0;
    for (; t->name && n + 1 < cap; t++) out[n++] = t->name;
    out[n] = NULL;
}

static int is_set(const struct yk_def *d, const void *base)
{
    const char *field = (const char *)base + d->offset;
    return d->type == YK_STRING ? field[0] != '\0' : *(const unsigned *)field != 0;
}

/* Applies table keys other than YK_CUSTOM ones from a mapping. With warn,
 * warns where a key the engine does not enforce yet is set to something
 * other than "off". Returns -1 on any error. */
static int apply_keys(struct yc *c, const struct yk_def *table, const yaml_node_t *map, void *base,
                      const char *where, int warn)
{
    const char *cands[16];
    int rc = 0;
    key_names(table, cands, 16);
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        const char *key = yc_pair(c, p, &k, &v);
        const struct yk_def *d = key ? yk_find(table, key) : NULL;
        if (!key) continue;
        if (!d) {
            yc_unknown_key(c, k, key, where, cands);
            rc = -1;
        } else if (d->type != YK_CUSTOM) {
            if (yc_apply_key(c, d, base, v) < 0) rc = -1;
            else if (warn && d->pending && !(d->twin && opt_find_long(d->twin)) && d->type != YK_ENUM &&
                     is_set(d, base))
                yc_warn(c, k, "%s: %s", key, d->pending);
        }
    }
    return rc;
}

static void set_defaults(struct yc *c, const struct yk_def *table, void *base)
{
    for (; table->name; table++)
        if (table->defval && table->type != YK_CUSTOM) yc_set_key(c, table, base, table->defval, NULL);
}

/* Appends "HOST:PORT[,weight=N]" to g through the option table's parser. */
static int add_server(struct yc *c, struct upstream_group_cfg *g, const yaml_node_t *at, const char *spec)
{
    const struct opt_def *o = opt_find_long("upstream");
    char why[400];
    if (!o) return -1;
    if (g->nservers == CFG_MAX_UPSTREAMS) {
        yc_err(c, at, "too many servers (max %d)", CFG_MAX_UPSTREAMS);
        return -1;
    }
    if (!c->scratch && !(c->scratch = calloc(1, sizeof(*c->scratch)))) {
        yc_err(c, at, "out of memory");
        return -1;
    }
    c->scratch->mode = MODE_RELAY;
    c->scratch->nupstreams = 0;
    if (opt_apply(o, c->cfg, c->scratch, spec, why, sizeof(why)) < 0) {
        yc_err(c, at, "server: %s", why);
        return -1;
    }
    const struct upstream_cfg *u = &c->scratch->upstreams[0];
    if (cfg_upstream_unique(g->servers, g->nservers, u, spec, why, sizeof(why)) < 0) {
        yc_err(c, at, "%s", why);
        return -1;
    }
    g->servers[g->nservers] = *u;
    g->servers[g->nservers++].resolve_all = 2;     /* the group's, unless the server says */
    return 0;
}

/* One server: "HOST:PORT[,weight=N]" or {address, weight, backup, maxconn}. */
static void load_server(struct yc *c, struct upstream_group_cfg *g, const yaml_node_t *n)
{
    const char *s;
    if (!n) return;
    if (n->type == YAML_SCALAR_NODE) {
        if ((s = yc_scalar(c, n, "server"))) add_server(c, g, n, s);
        return;
    }
    if (yc_mapping(c, n, "server") < 0) return;
    const yaml_node_t *addr = yc_lookup(c, n, "address"), *srv = yc_lookup(c, n, "srv");
    char spec[300];
    if (addr && srv) {
        yc_err(c, srv, "server: give 'address:' or 'srv:', not both");
        return;
    }
    if (!addr && !srv) {
        yc_err(c, n, "server: missing 'address: HOST:PORT' (or 'srv: NAME')");
        return;
    }
    if (srv) {
        if (!(s = yc_scalar(c, srv, "srv"))) return;
        if (strchr(s, ',') || !strncasecmp(s, "srv://", 6)) {
            yc_err(c, srv, "srv: just the record's name, e.g. _http._tcp.example (other keys beside it)");
            return;
        }
        snprintf(spec, sizeof(spec), "srv://%s", s);
        if (add_server(c, g, srv, spec) < 0) return;
        addr = srv;
    } else if (!(s = yc_scalar(c, addr, "address")) || add_server(c, g, addr, s) < 0) {
        return;
    }
    struct upstream_cfg *u = &g->servers[g->nservers - 1];
    if (u->srv && yc_lookup(c, n, "weight")) {
        yc_err(c, yc_lookup(c, n, "weight"), "weight: an SRV record gives each server's weight");
        return;
    }
    if (strchr(s, ',') && yc_lookup(c, n, "weight")) {
        yc_err(c, addr, "address: give the weight once, in 'weight:'");
        return;
    }
    apply_keys(c, yk_server_keys, n, u, "a server", 1);
    if (u->srv && u->resolve_all == 1) yc_err(c, yc_lookup(c, n, "resolve"), "resolve: not for an SRV record");
}

/* Servers without their own `resolve:` take the group's. */
static void group_resolve(struct upstream_group_cfg *g)
{
    for (size_t i = 0; i < g->nservers; i++) {
        struct upstream_cfg *u = &g->servers[i];
        if (u->resolve_all == 2) u->resolve_all = u->srv ? 0 : g->resolve;
    }
}

/* `servers:` (or a group written as a bare list): one server or a list. */
static void load_servers(struct yc *c, struct upstream_group_cfg *g, const yaml_node_t *v)
{
    if (!v || v->type != YAML_SEQUENCE_NODE) {
        load_server(c, g, v);
        return;
    }
    for (const yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++)
        load_server(c, g, yc_node(c, *i));
}

static void load_health(struct yc *c, struct upstream_group_cfg *g, const yaml_node_t *v)
{
    if (yc_mapping(c, v, "health-check") < 0) return;
    set_defaults(c, yk_health_keys, &g->health);
    apply_keys(c, yk_health_keys, v, &g->health, "health-check", 0);
}

static void load_group_map(struct yc *c, struct upstream_group_cfg *g, const yaml_node_t *v)
{
    const yaml_node_t *servers = yc_lookup(c, v, "servers"), *hc = yc_lookup(c, v, "health-check");
    const yaml_node_t *bal = yc_lookup(c, v, "balance");
    if (servers) load_servers(c, g, servers);
    if (hc) load_health(c, g, hc);
    if (apply_keys(c, yk_group_keys, v, g, "an upstream group", 1) == 0 && bal && g->balance != 0 &&
        !opt_find_long("balance"))
        yc_warn(c, bal, "balance: %s is %s: smooth weighted round robin is used", yk_balance_names[g->balance],
                NOT_YET);
    g->retries_set = yc_lookup(c, v, "retries") != NULL;
    if (!servers) yc_err(c, v, "upstream group '%s': missing 'servers:'", g->name);
}

/* A group left without servers, with no error said about them (a server
 * refused is reported where it is), is an error at its `servers:` (or at
 * the group): reported once here, not at each listener that names it. */
static void require_servers(struct yc *c, const struct upstream_group_cfg *g, const yaml_node_t *v,
                            unsigned before)
{
    const yaml_node_t *servers = v->type == YAML_MAPPING_NODE ? yc_lookup(c, v, "servers") : v;
    if (g->nservers || c->d->errors != before || !servers) return;
    yc_err(c, servers, "upstream group '%s': no servers", g->name);
}

static void load_group(struct yc *c, const yaml_node_t *k, const char *name, const yaml_node_t *v,
                       struct upstream_group_cfg *g)
{
    unsigned before = c->d->errors;
    if (!cfg_name_ok(name) || strchr(name, ':'))
        yc_err(c, k, "upstream group name '%.80s': use 1-%d letters, digits, '-', '_' or '.'", name,
               CFG_NAME_MAX);
    snprintf(g->name, sizeof(g->name), "%s", name);
    set_defaults(c, yk_group_keys, g);
    if (v->type == YAML_SEQUENCE_NODE || v->type == YAML_SCALAR_NODE) {
        if (!yc_is_null(v)) load_servers(c, g, v);
    } else if (yc_mapping(c, v, "upstream group") == 0) {
        load_group_map(c, g, v);
    }
    require_servers(c, g, v, before);
    group_resolve(g);
    size_t primaries = 0;
    for (size_t i = 0; i < g->nservers; i++) primaries += !g->servers[i].backup;
    if (g->nservers && !primaries) yc_err(c, v, "upstream group '%s': only backup servers", g->name);
}

static int find_group(struct yc *c, const char *name)
{
    for (size_t i = 0; i < c->cfg->ngroups; i++)
        if (strcmp(c->cfg->groups[i].name, name) == 0) return (int)i;
    return -1;
}

void yc_load_groups(struct yc *c, const yaml_node_t *map)
{
    if (yc_mapping(c, map, "upstreams") < 0) return;
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    if (n > YC_MAX_GROUPS) {
        yc_err(c, map, "upstreams: too many groups (%zu, max %d)", n, YC_MAX_GROUPS);
        return;
    }
    if (n == 0) return;
    c->cfg->groups = calloc(n, sizeof(*c->cfg->groups));
    c->groups = calloc(n, sizeof(*c->groups));
    if (!c->cfg->groups || !c->groups) {
        yc_err(c, map, "out of memory");
        return;
    }
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        const char *name = yc_pair(c, p, &k, &v);
        if (!name || find_group(c, name) >= 0) continue;     /* a duplicate key is reported already */
        c->groups[c->cfg->ngroups] = (struct yc_group){ k, v, 0 };
        load_group(c, k, name, v, &c->cfg->groups[c->cfg->ngroups++]);
    }
}

/* Copies the group's servers to the listener (backup servers only once the
 * engine can hold them back), and applies its twin keys through the table. */
static void group_to_listener(struct yc *c, const struct upstream_group_cfg *g, const yaml_node_t *gmap,
                              struct listener_cfg *l, const yaml_node_t *lmap)
{
    int backups_held = yk_find(yk_server_keys, "backup")->pending == NULL;
    l->nupstreams = 0;
    for (size_t i = 0; i < g->nservers; i++)
        if (backups_held || !g->servers[i].backup) l->upstreams[l->nupstreams++] = g->servers[i];
    for (const struct yk_def *k = yk_group_keys; k->name; k++) {
        const struct opt_def *o = k->twin ? opt_find_long(k->twin) : NULL;
        const yaml_node_t *v = gmap ? yc_lookup(c, gmap, k->name) : NULL;
        if (o && v && !yc_lookup(c, lmap, k->twin)) yc_apply_opt(c, o, l, v);
    }
}

static void unknown_group(struct yc *c, const yaml_node_t *v, const char *name)
{
    const char *cands[YC_MAX_GROUPS + 1];
    size_t n = 0;
    for (; n < c->cfg->ngroups; n++) cands[n] = c->cfg->groups[n].name;
    cands[n] = NULL;
    const char *best = yc_suggest(name, cands);
    if (best)
        yc_err(c, v, "upstream: unknown group '%.80s' (did you mean '%s'?)", name, best);
    else
        yc_err(c, v, "upstream: unknown group '%.80s' (%s; a server is HOST:PORT)", name,
               n ? "not under 'upstreams:'" : "no 'upstreams:' defined");
}

void yc_listener_upstream(struct yc *c, struct listener_cfg *l, const yaml_node_t *lmap, const yaml_node_t *v)
{
    if (v->type == YAML_SCALAR_NODE && !yc_is_null(v) && !strchr((const char *)v->data.scalar.value, ':')) {
        const char *name = (const char *)v->data.scalar.value;
        int i = find_group(c, name);
        if (i < 0) {
            unknown_group(c, v, name);
            return;
        }
        c->groups[i].used = 1;
        l->group = &c->cfg->groups[i];
        group_to_listener(c, l->group, c->groups[i].val, l, lmap);
        return;
    }
    struct upstream_group_cfg *g = calloc(1, sizeof(*g));
    if (!g) {
        yc_err(c, v, "out of memory");
        return;
    }
    unsigned before = c->d->errors;
    if (yc_is_null(v)) yc_err(c, v, "upstream: expected a group name or servers, got nothing");
    else if (v->type == YAML_MAPPING_NODE) yc_err(c, v, "upstream: define groups under 'upstreams:' and "
                                                  "give the name here, or list servers");
    else load_servers(c, g, v);
    group_resolve(g);
    if (!g->nservers && c->d->errors == before) yc_err(c, v, "upstream: no servers");
    size_t primaries = 0;
    for (size_t i = 0; i < g->nservers; i++) primaries += !g->servers[i].backup;
    if (g->nservers && !primaries) yc_err(c, v, "upstream: only backup servers");
    group_to_listener(c, g, NULL, l, lmap);
    free(g);
}

void yc_warn_unused_groups(struct yc *c)
{
    for (size_t i = 0; i < c->cfg->ngroups && c->groups; i++)
        if (!c->groups[i].used && c->cfg->groups[i].nservers)   /* an empty one is an error already */
            yc_warn(c, c->groups[i].key, "upstream group '%s' is not used by any listener",
                    c->cfg->groups[i].name);
}
