/* yaml_node.h - the config loaders' toolkit (yaml_node.c), shared by
 * yaml.c, yaml_listener.c, yaml_groups.c and ssjson.c.
 *
 * struct yc is one load: the libyaml document, the config being filled and
 * the diagnostics gathered so far. Helpers report into it and return -1 (or
 * NULL) so that callers skip the bad part and go on with the next key.
 */
#ifndef FERRY_CFG_YAML_NODE_H
#define FERRY_CFG_YAML_NODE_H

#include <stddef.h>
#include <yaml.h>

#include "config/config.h"
#include "config/diag.h"
#include "config/options.h"

#define YC_MAX_LISTENERS 256
#define YC_MAX_GROUPS 256
#define YC_MAX_ERRORS 100          /* stored and printed; more are only counted */
#define YC_NODE_BUDGET 1000000     /* node visits: aliases can make a small file a huge tree */

struct yc_diag {
    unsigned long line, col;       /* 1-based */
    size_t seq;                    /* order of reporting, for a stable sort */
    int is_error;
    char *text;                    /* the whole line */
};

struct yc {
    const char *file;
    yaml_document_t *doc;
    struct ferry_cfg *cfg;
    struct cfg_diag *d;
    struct yc_diag *diags;
    size_t ndiags, cap;
    unsigned long budget;
    int budget_reported;
    struct listener_cfg *scratch;  /* parses one upstream server through the option table */
    struct yc_group *groups;       /* per cfg->groups entry */
    struct yc_lnodes *lnodes;      /* per listener, for the checks across listeners */
};

struct yc_lnodes {
    const yaml_node_t *name, *listen;
};

/* Where a group was defined, and whether a listener names it. */
struct yc_group {
    const yaml_node_t *key, *val;
    int used;
};

/* Types of the keys only the config file has (upstream groups). */
enum yk_type { YK_UINT, YK_DURATION, YK_BOOL, YK_STRING, YK_ENUM, YK_CUSTOM };

/* A config-file key outside the option table: a field of an upstream group,
 * of one server in it, or of its health check. Same idea as struct opt_def:
 * bounds and default in one place, applied by one routine. */
struct yk_def {
    const char *name;
    enum yk_type type;
    size_t offset;                 /* in the struct the table describes */
    unsigned long min, max;        /* YK_STRING: max = buffer size */
    const char *defval;            /* NULL: none, or handled by the code */
    const char *const *choices;    /* YK_ENUM: NULL-terminated names, value = index */
    const char *twin;              /* listener option applied to every listener of the
                                    * group when the option table has it */
    const char *pending;           /* NULL: enforced; else what is not, yet (docs, warnings) */
    const char *metavar, *help;
};

/* ---- diagnostics and nodes ---- */
void yc_report(struct yc *c, int is_error, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define yc_err(c, n, ...) yc_report((c), 1, (n), __VA_ARGS__)
#define yc_warn(c, n, ...) yc_report((c), 0, (n), __VA_ARGS__)

/* Counts node visits against the budget; -1 (reported once) when spent. */
int yc_charge(struct yc *c, size_t visits);
/* Node by id, or NULL (bad id, or the visit budget is spent). */
yaml_node_t *yc_node(struct yc *c, int id);
int yc_is_null(const yaml_node_t *n);
/* A scalar's text for `key`; NULL with an error for null, a list, a mapping,
 * or text holding a NUL byte. */
const char *yc_scalar(struct yc *c, const yaml_node_t *n, const char *key);
int yc_bool(struct yc *c, const yaml_node_t *n, const char *key, int *out);
/* Checks that n is a mapping with plain-text keys, none twice. */
int yc_mapping(struct yc *c, const yaml_node_t *n, const char *what);
/* Key text of a pair (NULL if the key is not a scalar); sets *k and *v. */
const char *yc_pair(struct yc *c, const yaml_node_pair_t *p, yaml_node_t **k, yaml_node_t **v);
yaml_node_t *yc_lookup(struct yc *c, const yaml_node_t *map, const char *key);
/* The candidate closest to name (a likely typo), or NULL. */
const char *yc_suggest(const char *name, const char *const *cands);
/* "unknown key 'x' in WHERE (did you mean 'y'?)". cands: NULL-terminated. */
void yc_unknown_key(struct yc *c, const yaml_node_t *k, const char *key, const char *where,
                    const char *const *cands);

/* Applies a table option from a scalar, or each item of a list when the
 * option is repeatable. l is NULL for global options. */
int yc_apply_opt(struct yc *c, const struct opt_def *o, struct listener_cfg *l, const yaml_node_t *v);
/* Applies a yk_def key to base from a node, or from text (at: node for
 * errors, NULL for defaults). */
int yc_apply_key(struct yc *c, const struct yk_def *k, void *base, const yaml_node_t *v);
int yc_set_key(struct yc *c, const struct yk_def *k, void *base, const char *s, const yaml_node_t *at);
/* "enforced" or "accepted, not yet enforced ..." for docs and warnings. */
const char *yk_status(const struct yk_def *k);
const struct yk_def *yk_find(const struct yk_def *table, const char *name);
/* An option is repeatable when its help says so (options.c convention). */
int yc_opt_repeatable(const struct opt_def *o);

/* Parses the text (YAML or JSON) and runs walk on the root node (NULL for an
 * empty document), then hands the sorted diagnostics to d. 0 or -1. */
int yc_run(const char *name, const void *buf, size_t len, struct ferry_cfg *cfg, struct cfg_diag *d,
           void (*walk)(struct yc *, const yaml_node_t *, void *), void *arg);
/* Reads a whole file (at most 4 MiB). NULL with a reason in err. */
char *yc_read_file(const char *path, size_t *len, char *err, size_t errlen);
/* Same, reporting "PATH: cannot read: why" as an error through d. */
char *yc_read_file_or_report(const char *path, size_t *len, struct cfg_diag *d);

/* The global options of `ferry run|check FILE --log-level ...`, applied
 * over the file's (cfg->cli_over); an error is reported at `at`. */
void yc_apply_cli_overrides(struct yc *c, const yaml_node_t *at);

#endif
