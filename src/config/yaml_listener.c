/* yaml_listener.c - `listeners:`, a list of mappings with name, mode and
 * any listener option of the option table under its long flag name.
 *
 * Each listener gets the table's defaults for its mode first, then its keys,
 * then the same final check as the command line (cfg_listener_finish).
 * Across listeners: names are unique, and no listen address is used twice
 * or under a wildcard of another (with SO_REUSEPORT both binds would succeed
 * and the kernel would split the connections between the two listeners).
 */
#include "config/yaml_listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/options.h"
#include "config/yaml_groups.h"
#include "config/yaml_node.h"

#define MAX_CANDS 128

static void mode_list(char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int bit = 1; bit < (1 << 16) && used < outlen; bit <<= 1) {
        const char *name = opt_mode_name(bit);
        if (name) used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", name);
    }
}

static void listener_name(struct yc *c, const yaml_node_t *map, struct listener_cfg *l, size_t idx)
{
    const yaml_node_t *v = yc_lookup(c, map, "name");
    const char *s;
    c->lnodes[idx].name = v;
    snprintf(l->name, sizeof(l->name), "#%zu", idx + 1);
    if (!v) {
        yc_err(c, map, "listener #%zu: missing 'name'", idx + 1);
    } else if ((s = yc_scalar(c, v, "name"))) {
        if (cfg_name_ok(s)) snprintf(l->name, sizeof(l->name), "%s", s);
        else yc_err(c, v, "name: '%.80s': use 1-%d letters, digits, '-', '_' or '.'", s, CFG_NAME_MAX);
    }
}

static int listener_mode(struct yc *c, const yaml_node_t *map, const struct listener_cfg *l)
{
    const yaml_node_t *v = yc_lookup(c, map, "mode");
    char modes[200];
    const char *s;
    int mode;
    mode_list(modes, sizeof(modes));
    if (!v) {
        yc_err(c, map, "listener '%s': missing 'mode' (%s)", l->name, modes);
        return 0;
    }
    if (!(s = yc_scalar(c, v, "mode"))) return 0;
    if (!(mode = opt_mode_by_name(s))) yc_err(c, v, "mode: '%.80s': expected one of %s", s, modes);
    return mode;
}

static void listener_key(struct yc *c, struct listener_cfg *l, const yaml_node_t *map, const yaml_node_t *k,
                         const char *key, const yaml_node_t *v, const char *const *cands)
{
    const struct opt_def *o = opt_find_long(key);
    if (!o) {
        yc_unknown_key(c, k, key, "a listener", cands);
    } else if (o->scope == SCOPE_GLOBAL) {
        yc_err(c, k, "'%s' is a global option: set it at the top level, not in a listener", key);
    } else if (!(o->modes & l->mode)) {
        yc_err(c, k, "'%s' does not apply to %s listeners", key, opt_mode_name(l->mode));
    } else if (strcmp(key, "upstream") == 0) {
        yc_listener_upstream(c, l, map, v);
    } else {
        yc_apply_opt(c, o, l, v);
    }
}

/* Required keys, then the command line's final check (only when the
 * listener is otherwise clean: it would repeat or confuse earlier errors). */
static void listener_finish(struct yc *c, struct listener_cfg *l, const yaml_node_t *map, unsigned before)
{
    char why[400];
    if (!yc_lookup(c, map, "listen")) {
        yc_err(c, map, "listener '%s': missing 'listen: HOST:PORT'", l->name);
        return;
    }
    if (l->mode == MODE_RELAY && !yc_lookup(c, map, "upstream")) {
        yc_err(c, map, "listener '%s': a relay needs 'upstream:' (a group name or servers)", l->name);
        return;
    }
    if (l->mode == MODE_MUX_SERVER && !yc_lookup(c, map, "upstream") && !yc_lookup(c, map, "dynamic")) {
        yc_err(c, map, "listener '%s': a mux-server needs 'upstream:' (a group name or servers) or "
               "'dynamic: true'", l->name);
        return;
    }
    /* A group without servers is an error at the group already; the final
     * check would blame the listener, with a command-line hint. */
    if (cfg_balanced(l) && l->group && !l->group->nservers) return;
    if (c->d->errors == before && cfg_listener_finish(l, why, sizeof(why)) < 0)
        yc_err(c, map, "listener '%s': %s", l->name, why);
}

static void load_listener(struct yc *c, const yaml_node_t *map, size_t idx, const char *const *cands)
{
    struct listener_cfg *l = &c->cfg->listeners[idx];
    unsigned before = c->d->errors;
    char why[400];
    if (yc_mapping(c, map, "listener") < 0) return;
    listener_name(c, map, l, idx);
    if (!(l->mode = listener_mode(c, map, l))) return;
    if (opt_defaults(c->cfg, l, why, sizeof(why)) < 0) {
        yc_err(c, map, "listener '%s': defaults: %s", l->name, why);
        return;
    }
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        const char *key = yc_pair(c, p, &k, &v);
        if (!key || !strcmp(key, "name") || !strcmp(key, "mode")) continue;
        if (!strcmp(key, "listen")) c->lnodes[idx].listen = v;
        listener_key(c, l, map, k, key, v, cands);
    }
    listener_finish(c, l, map, before);
}

/* The earlier listener one of whose addresses clashes with listener i's
 * address j (net_addr_overlap), and that address; NULL if none. Clashes
 * within one listener are refused by the `listen` option itself. */
static const struct listener_cfg *addr_seen(const struct ferry_cfg *cfg, size_t i, size_t j,
                                            const struct net_addr **had)
{
    const struct net_addr *a = &cfg->listeners[i].listen[j];
    for (size_t pi = 0; pi < i; pi++) {
        const struct listener_cfg *p = &cfg->listeners[pi];
        if ((*had = cfg_listen_clash(p, p->nlisten, a))) return p;
    }
    return NULL;
}

static void check_across(struct yc *c)
{
    const struct ferry_cfg *cfg = c->cfg;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct listener_cfg *l = &cfg->listeners[i];
        for (size_t p = 0; p < i && l->name[0] != '#'; p++)
            if (strcmp(cfg->listeners[p].name, l->name) == 0) {
                const yaml_node_t *first = c->lnodes[p].name;
                yc_err(c, c->lnodes[i].name, "name: listener '%s' is already defined (line %lu)", l->name,
                       first ? (unsigned long)first->start_mark.line + 1 : 0UL);
                break;
            }
        for (size_t j = 0; j < l->nlisten; j++) {
            const struct net_addr *had;
            const struct listener_cfg *other = addr_seen(cfg, i, j, &had);
            char owner[64], why[300];
            if (!other) continue;
            snprintf(owner, sizeof(owner), "listener '%s'", other->name);
            cfg_clash_text(&l->listen[j], had, owner, why, sizeof(why));
            yc_err(c, c->lnodes[i].listen, "listen: %s", why);
        }
    }
}

void yc_load_listeners(struct yc *c, const yaml_node_t *seq)
{
    const char *cands[MAX_CANDS];
    size_t ncands = 0;
    if (seq->type != YAML_SEQUENCE_NODE) {
        yc_err(c, seq, "listeners: expected a list (- name: ...), got %s",
               yc_is_null(seq) ? "nothing" : seq->type == YAML_MAPPING_NODE ? "a mapping" : "text");
        return;
    }
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n == 0 || n > YC_MAX_LISTENERS) {
        yc_err(c, seq, "listeners: %s", n ? "too many (max 256)" : "empty list");
        return;
    }
    c->cfg->listeners = calloc(n, sizeof(*c->cfg->listeners));
    c->lnodes = calloc(n, sizeof(*c->lnodes));
    if (!c->cfg->listeners || !c->lnodes) {
        yc_err(c, seq, "out of memory");
        return;
    }
    c->cfg->nlisteners = n;
    cands[ncands++] = "name";
    cands[ncands++] = "mode";
    for (const struct opt_def *o = opt_table; o->name && ncands + 1 < MAX_CANDS; o++)
        if (o->scope == SCOPE_LISTENER) cands[ncands++] = o->name;
    cands[ncands] = NULL;
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = yc_node(c, seq->data.sequence.items.start[i]);
        if (!item) break;
        load_listener(c, item, i, cands);
    }
    check_across(c);
}
