/* yaml.c - see yaml.h. The `ferry run` config file: its top level and the
 * global options. Listeners: yaml_listener.c; upstream groups:
 * yaml_groups.c; the toolkit (diagnostics, nodes, parsing): yaml_node.c;
 * shadowsocks-libev JSON: ssjson.c.
 */
#include "config/yaml.h"

#include <stdlib.h>
#include <string.h>

#include "config/options.h"
#include "config/yaml_groups.h"
#include "config/yaml_listener.h"
#include "config/yaml_node.h"

/* ---- the top level ---- */

static void load_globals(struct yc *c, const yaml_node_t *root)
{
    const char *cands[128];
    size_t n = 0;
    char why[300];
    cands[n++] = "listeners";
    cands[n++] = "upstreams";
    for (const struct opt_def *o = opt_table; o->name && n < 127; o++) cands[n++] = o->name;
    cands[n] = NULL;
    for (const struct opt_def *o = opt_table; o->name; o++)
        if (o->scope == SCOPE_GLOBAL && o->defval && opt_apply(o, c->cfg, NULL, o->defval, why, sizeof(why)) < 0)
            yc_err(c, root, "default of %s: %s", o->name, why);
    for (const yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        const char *key = yc_pair(c, p, &k, &v);
        if (!key || !strcmp(key, "listeners") || !strcmp(key, "upstreams")) continue;
        const struct opt_def *o = opt_find_long(key);
        if (!o) yc_unknown_key(c, k, key, "the top level", cands);
        else if (o->scope != SCOPE_GLOBAL)
            yc_err(c, k, "'%s' is a listener option: set it on a listener under 'listeners:'", key);
        else yc_apply_opt(c, o, NULL, v);
    }
    yc_apply_cli_overrides(c, root);
}

static void load_root(struct yc *c, const yaml_node_t *root)
{
    if (!root) {
        yc_err(c, NULL, "empty config: expected a mapping with 'listeners:'");
        return;
    }
    if (yc_mapping(c, root, "the config file") < 0) return;
    const yaml_node_t *groups = yc_lookup(c, root, "upstreams");
    const yaml_node_t *listeners = yc_lookup(c, root, "listeners");
    if (groups) yc_load_groups(c, groups);
    if (listeners) yc_load_listeners(c, listeners);
    else yc_err(c, root, "no 'listeners:' in the config file");
    unsigned before = c->d->errors;
    load_globals(c, root);
    const char *key;
    char why[300];
    if (c->d->errors == before && cfg_global_finish(c->cfg, &key, why, sizeof(why)) < 0) {
        const yaml_node_t *v = yc_lookup(c, root, key);
        yc_err(c, v ? v : root, "%s", why);
    }
    yc_warn_unused_groups(c);
}

static void walk_config(struct yc *c, const yaml_node_t *root, void *arg)
{
    (void)arg;
    load_root(c, root);
}

int cfg_load_string(const char *name, const void *buf, size_t len, struct ferry_cfg *cfg,
                    struct cfg_diag *d)
{
    return yc_run(name, buf, len, cfg, d, walk_config, NULL);
}

int cfg_load_file(const char *path, struct ferry_cfg *cfg, struct cfg_diag *d)
{
    size_t len;
    char *buf = yc_read_file_or_report(path, &len, d);
    if (!buf) return -1;
    int rc = cfg_load_string(path, buf, len, cfg, d);
    free(buf);
    return rc;
}
