/* yaml_node.c - see yaml_node.h: the loaders' toolkit. Diagnostics, node
 * access, applying options and keys from nodes, parsing a document, and
 * reading a file. Knows no schema: yaml.c (ferry run), yaml_listener.c,
 * yaml_groups.c and ssjson.c walk their documents with it.
 *
 * The file is loaded whole with libyaml's document API (positions come with
 * every node), then walked along the schema. libyaml reads JSON too.
 */
#include "config/yaml_node.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define YC_FILE_MAX (4u << 20)     /* a config larger than 4 MiB is a mistake */

/* ---- diagnostics ---- */

void yc_report(struct yc *c, int is_error, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[640], *line = NULL;
    va_list ap;
    unsigned long ln = n ? n->start_mark.line + 1 : 1, col = n ? n->start_mark.column + 1 : 1;

    if (is_error) c->d->errors++;
    else c->d->warnings++;
    if (is_error && c->d->errors > YC_MAX_ERRORS) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->ndiags == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct yc_diag *nd = realloc(c->diags, cap * sizeof(*nd));
        if (!nd) return;
        c->diags = nd;
        c->cap = cap;
    }
    if (asprintf(&line, "%s:%lu:%lu: %s%s", c->file, ln, col, is_error ? "" : "warning: ", msg) < 0)
        return;
    c->diags[c->ndiags] = (struct yc_diag){ ln, col, c->ndiags, is_error, line };
    c->ndiags++;
}

static int diag_cmp(const void *a, const void *b)
{
    const struct yc_diag *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    if (x->col != y->col) return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hands the diagnostics to the sink in file order, then frees them. A node
 * reached twice through an alias would repeat its line: sent once. */
static void flush_diags(struct yc *c)
{
    if (c->ndiags) qsort(c->diags, c->ndiags, sizeof(*c->diags), diag_cmp);
    for (size_t i = 0; i < c->ndiags; i++)
        if (c->d->emit && (i == 0 || strcmp(c->diags[i].text, c->diags[i - 1].text) != 0))
            c->d->emit(c->d->arg, c->diags[i].is_error, c->diags[i].text);
    for (size_t i = 0; i < c->ndiags; i++) free(c->diags[i].text);
    if (c->d->errors > YC_MAX_ERRORS && c->d->emit) {
        char line[300];
        snprintf(line, sizeof(line), "%s: too many errors (%u), only the first %d shown", c->file,
                 c->d->errors, YC_MAX_ERRORS);
        c->d->emit(c->d->arg, 1, line);
    }
    free(c->diags);
    c->diags = NULL;
    c->ndiags = c->cap = 0;
}

/* ---- nodes ---- */

int yc_charge(struct yc *c, size_t visits)
{
    if (visits <= c->budget) {
        c->budget -= visits;
        return 0;
    }
    c->budget = 0;
    if (!c->budget_reported)
        yc_err(c, NULL, "config too complex (more than %d nodes visited; aliases?)", YC_NODE_BUDGET);
    c->budget_reported = 1;
    return -1;
}

yaml_node_t *yc_node(struct yc *c, int id)
{
    return yc_charge(c, 1) < 0 ? NULL : yaml_document_get_node(c->doc, id);
}

int yc_is_null(const yaml_node_t *n)
{
    if (!n) return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static const char *kind(const yaml_node_t *n)
{
    if (yc_is_null(n)) return "nothing";
    return n->type == YAML_SEQUENCE_NODE ? "a list" : n->type == YAML_MAPPING_NODE ? "a mapping" : "text";
}

const char *yc_scalar(struct yc *c, const yaml_node_t *n, const char *key)
{
    if (!n) return NULL;
    if (n->type != YAML_SCALAR_NODE || yc_is_null(n)) {
        yc_err(c, n, "%s: expected a value, got %s", key, kind(n));
        return NULL;
    }
    const char *s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length) {
        yc_err(c, n, "%s: NUL byte in value", key);
        return NULL;
    }
    return s;
}

int yc_bool(struct yc *c, const yaml_node_t *n, const char *key, int *out)
{
    const char *s = yc_scalar(c, n, key);
    if (!s) return -1;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) *out = 1;
    else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) *out = 0;
    else {
        yc_err(c, n, "%s: '%.80s': expected true or false", key, s);
        return -1;
    }
    return 0;
}

const char *yc_pair(struct yc *c, const yaml_node_pair_t *p, yaml_node_t **k, yaml_node_t **v)
{
    *k = yaml_document_get_node(c->doc, p->key);
    *v = yaml_document_get_node(c->doc, p->value);
    if (!*k || !*v || (*k)->type != YAML_SCALAR_NODE) return NULL;
    const char *s = (const char *)(*k)->data.scalar.value;
    return strlen(s) == (*k)->data.scalar.length ? s : NULL;
}

struct keyref {
    const char *key;
    const yaml_node_t *node;
};

static int keyref_cmp(const void *a, const void *b)
{
    const struct keyref *x = a, *y = b;
    int r = strcmp(x->key, y->key);
    if (r) return r;
    if (x->node->start_mark.index != y->node->start_mark.index)
        return x->node->start_mark.index < y->node->start_mark.index ? -1 : 1;
    return 0;
}

/* Reports non-text keys, and duplicates by sorting (a mapping may be big). */
int yc_mapping(struct yc *c, const yaml_node_t *n, const char *what)
{
    if (!n) return -1;
    if (n->type != YAML_MAPPING_NODE) {
        yc_err(c, n, "%s: expected a mapping (key: value), got %s", what, kind(n));
        return -1;
    }
    const yaml_node_pair_t *start = n->data.mapping.pairs.start, *top = n->data.mapping.pairs.top;
    if (yc_charge(c, (size_t)(top - start)) < 0) return -1;
    struct keyref *refs = malloc(((size_t)(top - start) + 1) * sizeof(*refs));
    size_t nrefs = 0;
    if (!refs) {
        yc_err(c, n, "out of memory");
        return -1;
    }
    for (const yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *k, *v;
        const char *key = yc_pair(c, p, &k, &v);
        if (key) refs[nrefs++] = (struct keyref){ key, k };
        else if (k) yc_err(c, k, "%s: keys must be plain text", what);
    }
    qsort(refs, nrefs, sizeof(*refs), keyref_cmp);
    for (size_t i = 1, run = 0; i < nrefs; i++) {
        if (strcmp(refs[run].key, refs[i].key) != 0) run = i;
        else yc_err(c, refs[i].node, "duplicate key '%.80s' (first at line %lu)", refs[i].key,
                    (unsigned long)refs[run].node->start_mark.line + 1);
    }
    free(refs);
    return 0;
}

yaml_node_t *yc_lookup(struct yc *c, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k, *v;
        const char *s = yc_pair(c, p, &k, &v);
        if (s && strcmp(s, key) == 0) return v;
    }
    return NULL;
}

/* Edit distance counting a swap of two neighbours as one edit (optimal
 * string alignment), for "did you mean". Names of 32 bytes or more get none. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d[32][32];
    if (la >= 32 || lb >= 32) return 99;
    for (size_t i = 0; i <= la; i++) d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            unsigned best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1u < best) best = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < best) best = d[i][j - 1] + 1u;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1u < best)
                best = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned char)best;
        }
    return d[la][lb];
}

const char *yc_suggest(const char *name, const char *const *cands)
{
    const char *best = NULL;
    size_t bestd = 3;
    for (; cands && *cands; cands++) {
        size_t d = distance(name, *cands);
        if (d < bestd && (d <= 1 || strlen(*cands) > 5)) {
            bestd = d;
            best = *cands;
        }
    }
    return best;
}

void yc_unknown_key(struct yc *c, const yaml_node_t *k, const char *key, const char *where,
                    const char *const *cands)
{
    const char *best = yc_suggest(key, cands);
    if (best) yc_err(c, k, "unknown key '%.80s' in %s (did you mean '%s'?)", key, where, best);
    else yc_err(c, k, "unknown key '%.80s' in %s", key, where);
}

/* ---- applying values ---- */

int yc_opt_repeatable(const struct opt_def *o)
{
    return o->help && strstr(o->help, "repeatable") != NULL;
}

static int apply_one(struct yc *c, const struct opt_def *o, struct listener_cfg *l, const yaml_node_t *v)
{
    char why[400];
    const char *val = NULL;
    if (o->type == OPT_FLAG) {
        int on;
        if (yc_bool(c, v, o->name, &on) < 0) return -1;
        if (!on) return 0;       /* flags are off unless set */
    } else if (!(val = yc_scalar(c, v, o->name))) {
        return -1;
    }
    if (opt_apply(o, c->cfg, l, val, why, sizeof(why)) < 0) {
        yc_err(c, v, "%s: %s", o->name, why);
        return -1;
    }
    return 0;
}

int yc_apply_opt(struct yc *c, const struct opt_def *o, struct listener_cfg *l, const yaml_node_t *v)
{
    if (!v || v->type != YAML_SEQUENCE_NODE) return apply_one(c, o, l, v);
    if (!yc_opt_repeatable(o)) {
        yc_err(c, v, "%s: takes one value, not a list", o->name);
        return -1;
    }
    int rc = 0;
    for (const yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
        const yaml_node_t *item = yc_node(c, *i);
        if (!item) return -1;
        if (item->type == YAML_SEQUENCE_NODE) {
            yc_err(c, item, "%s: expected a value, got a list", o->name);
            rc = -1;
        } else if (apply_one(c, o, l, item) < 0) {
            rc = -1;
        }
    }
    return rc;
}

static int parse_enum(const struct yk_def *k, const char *s, unsigned long *v)
{
    for (unsigned long i = 0; k->choices[i]; i++)
        if (strcmp(k->choices[i], s) == 0) return (*v = i), 0;
    return -1;
}

static void choices_text(const struct yk_def *k, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; k->choices[i] && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, "%s%s", i ? ", " : "", k->choices[i]);
}

int yc_apply_key(struct yc *c, const struct yk_def *k, void *base, const yaml_node_t *v)
{
    int on;
    if (k->type == YK_BOOL) {
        if (yc_bool(c, v, k->name, &on) < 0) return -1;
        *(unsigned *)((char *)base + k->offset) = (unsigned)on;
        return 0;
    }
    const char *s = yc_scalar(c, v, k->name);
    return s ? yc_set_key(c, k, base, s, v) : -1;
}

static int number(const struct yk_def *k, const char *s, unsigned long *val)
{
    char *end;
    unsigned ms;
    if (k->type == YK_DURATION) {
        if (opt_parse_duration(s, &ms) < 0) return -1;
        *val = ms;
        return 0;
    }
    errno = 0;
    *val = strtoul(s, &end, 10);
    return errno || *end || s[0] < '0' || s[0] > '9' ? -1 : 0;
}

int yc_set_key(struct yc *c, const struct yk_def *k, void *base, const char *s, const yaml_node_t *at)
{
    char *field = (char *)base + k->offset, list[200];
    unsigned long val = 0;
    switch (k->type) {
    case YK_STRING:
        if (strlen(s) >= k->max) {
            yc_err(c, at, "%s: longer than %lu bytes", k->name, k->max - 1);
            return -1;
        }
        memcpy(field, s, strlen(s) + 1);
        return 0;
    case YK_ENUM:
        if (parse_enum(k, s, &val) == 0) break;
        choices_text(k, list, sizeof(list));
        yc_err(c, at, "%s: '%.80s': expected one of %s", k->name, s, list);
        return -1;
    case YK_BOOL:
        val = strcmp(s, "true") == 0;
        break;
    case YK_CUSTOM:
        return -1;
    case YK_UINT:
    case YK_DURATION:
        if (number(k, s, &val) == 0 && val >= k->min && val <= k->max) break;
        if (k->type == YK_DURATION)
            yc_err(c, at, "%s: '%.80s': expected a duration from %lums to %lums, like 250ms, 10s, 5m",
                   k->name, s, k->min, k->max);
        else
            yc_err(c, at, "%s: '%.80s': expected a whole number from %lu to %lu", k->name, s, k->min, k->max);
        return -1;
    }
    *(unsigned *)field = (unsigned)val;
    return 0;
}

const char *yk_status(const struct yk_def *k)
{
    if (k->twin && opt_find_long(k->twin)) return "enforced";
    return k->pending ? k->pending : "enforced";
}

const struct yk_def *yk_find(const struct yk_def *table, const char *name)
{
    for (; table->name; table++)
        if (strcmp(table->name, name) == 0) return table;
    return NULL;
}

/* ---- options given on the command line ---- */

void yc_apply_cli_overrides(struct yc *c, const yaml_node_t *at)
{
    char why[400];
    for (size_t i = 0; i < c->cfg->ncli_over; i++)
        if (opt_apply(c->cfg->cli_over[i], c->cfg, NULL, c->cfg->cli_over_val[i], why, sizeof(why)) < 0)
            yc_err(c, at, "--%s: %s", c->cfg->cli_over[i]->name, why);
}

/* ---- a document ---- */

/* Passwords are scalars: cleared before libyaml frees them. */
static void wipe_scalars(yaml_document_t *doc)
{
    for (yaml_node_t *n = doc->nodes.start; n < doc->nodes.top; n++)
        if (n->type == YAML_SCALAR_NODE) explicit_bzero(n->data.scalar.value, n->data.scalar.length);
}

static void syntax_error(struct yc *c, const yaml_parser_t *p)
{
    yaml_node_t at;
    memset(&at, 0, sizeof(at));
    at.start_mark = p->problem_mark;
    if (p->context)
        yc_err(c, &at, "YAML syntax: %s (%s at line %lu)", p->problem ? p->problem : "error", p->context,
               (unsigned long)p->context_mark.line + 1);
    else
        yc_err(c, &at, "YAML syntax: %s", p->problem ? p->problem : "error");
}

/* A second document in the stream is an error (a stray '---'). */
static void check_single_document(struct yc *c, yaml_parser_t *p)
{
    yaml_document_t extra;
    if (!yaml_parser_load(p, &extra)) {
        syntax_error(c, p);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&extra);
    if (root) yc_err(c, root, "more than one YAML document: put everything in one");
    wipe_scalars(&extra);
    yaml_document_delete(&extra);
}

int yc_run(const char *name, const void *buf, size_t len, struct ferry_cfg *cfg, struct cfg_diag *d,
           void (*walk)(struct yc *, const yaml_node_t *, void *), void *arg)
{
    struct yc c = { .file = name, .cfg = cfg, .d = d, .budget = YC_NODE_BUDGET };
    yaml_parser_t p;
    yaml_document_t doc;
    unsigned before = d->errors;

    if (!yaml_parser_initialize(&p)) {
        yc_err(&c, NULL, "out of memory");
        flush_diags(&c);
        return -1;
    }
    yaml_parser_set_input_string(&p, buf, len);
    if (!yaml_parser_load(&p, &doc)) {
        syntax_error(&c, &p);
    } else {
        c.doc = &doc;
        walk(&c, yaml_document_get_root_node(&doc), arg);
        check_single_document(&c, &p);
        wipe_scalars(&doc);
        yaml_document_delete(&doc);
    }
    if (p.buffer.start) explicit_bzero(p.buffer.start, (size_t)(p.buffer.end - p.buffer.start));
    if (p.raw_buffer.start) explicit_bzero(p.raw_buffer.start, (size_t)(p.raw_buffer.end - p.raw_buffer.start));
    yaml_parser_delete(&p);
    free(c.scratch);             /* holds no allocation: only upstreams and retries are set */
    free(c.groups);
    free(c.lnodes);
    flush_diags(&c);
    return d->errors == before ? 0 : -1;
}

char *yc_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    if (!f) {
        snprintf(err, errlen, "%s", strerror(errno));
        return NULL;
    }
    if (!(buf = malloc(YC_FILE_MAX + 1))) {
        snprintf(err, errlen, "out of memory");
    } else {
        n = fread(buf, 1, YC_FILE_MAX + 1, f);
        if (ferror(f)) snprintf(err, errlen, "%s", strerror(errno));
        else if (n > YC_FILE_MAX) snprintf(err, errlen, "larger than %u bytes", YC_FILE_MAX);
        if (ferror(f) || n > YC_FILE_MAX) {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

char *yc_read_file_or_report(const char *path, size_t *len, struct cfg_diag *d)
{
    char err[256];
    char *buf = yc_read_file(path, len, err, sizeof(err));
    if (!buf) {
        char line[600];
        d->errors++;
        snprintf(line, sizeof(line), "%s: cannot read: %s", path, err);
        if (d->emit) d->emit(d->arg, 1, line);
    }
    return buf;
}
