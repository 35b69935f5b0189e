/* check.c - see check.h. */
#include "config/check.h"

#include <string.h>

#include "config/cli.h"
#include "config/options.h"
#include "config/ssjson.h"
#include "config/yaml.h"
#include "config/yaml_groups.h"
#include "config/yaml_node.h"
#include "obs/log.h"

/* `ferry check` prints diagnostics bare, as a compiler does; `ferry run`
 * with the "ferry: " of every other message it prints. */
static void emit_check(void *arg, int is_error, const char *line)
{
    (void)arg;
    (void)is_error;
    fprintf(stderr, "%s\n", line);
}

static void emit_run(void *arg, int is_error, const char *line)
{
    (void)arg;
    (void)is_error;
    log_plain("%s", line);
}

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

/* A shadowsocks-libev JSON file, checked as `ferry MODE -c FILE` would load
 * it (plus the command line's global options). 0 or -1; d counts. */
static int load_ss_json(struct ferry_cfg *cfg, int mode, const char *buf, size_t len, struct cfg_diag *d)
{
    char why[512], line[700];
    const char *key;
    struct listener_cfg *l;
    if (cli_add_listener(cfg, mode, why, sizeof(why)) < 0) goto bad;
    l = &cfg->listeners[0];
    if (cfg_load_ss_json_buf(cfg->config_path, buf, len, cfg, l, NULL, d) < 0) return -1;
    if (cfg_listener_finish(l, why, sizeof(why)) < 0 || cfg_global_finish(cfg, &key, why, sizeof(why)) < 0)
        goto bad;
    return 0;
bad:
    d->errors++;
    snprintf(line, sizeof(line), "%s: %s", cfg->config_path, why);
    d->emit(d->arg, 1, line);
    return -1;
}

static int check_ss_json(struct ferry_cfg *cfg, int mode, const char *buf, size_t len)
{
    struct cfg_diag d = { emit_check, NULL, 0, 0 };
    const char *path = cfg->config_path, *name = opt_mode_name(mode);
    if (load_ss_json(cfg, mode, buf, len, &d) == 0)
        printf("%s: ok as a shadowsocks-libev config for %s (%u warning%s): run it with "
               "'ferry %s -c %s'\n", path, name, d.warnings, plural(d.warnings), name, path);
    else
        fprintf(stderr, "%s: %u error%s (checked as a shadowsocks-libev config for 'ferry %s -c')\n", path,
                d.errors, plural(d.errors), name);
    return d.errors ? 1 : 0;
}

int cfg_file_main(struct ferry_cfg *cfg, int check_only)
{
    struct cfg_diag d = { check_only ? emit_check : emit_run, NULL, 0, 0 };
    const char *path = cfg->config_path;
    char why[256];
    size_t len;
    char *buf = yc_read_file(path, &len, why, sizeof(why));
    if (!buf) {      /* one line, no count of errors after it */
        if (check_only) fprintf(stderr, "%s: cannot read: %s\n", path, why);
        else log_plain("%s: cannot read: %s", path, why);
        return check_only ? 1 : 2;
    }
    int ss_mode = cfg_ss_json_mode(path, buf, len), rc;
    if (ss_mode && check_only) {
        rc = check_ss_json(cfg, ss_mode, buf, len);
    } else if (ss_mode) {
        log_plain("%s is a shadowsocks-libev config: run it with 'ferry %s -c %s'", path, opt_mode_name(ss_mode),
                  path);
        rc = 2;
    } else {
        rc = cfg_load_string(path, buf, len, cfg, &d);
        if (check_only && rc == 0)
            printf("%s: ok (%zu listener%s, %zu upstream group%s, %u warning%s)\n", path, cfg->nlisteners,
                   plural(cfg->nlisteners), cfg->ngroups, plural(cfg->ngroups), d.warnings, plural(d.warnings));
        else if (check_only)
            fprintf(stderr, "%s: %u error%s\n", path, d.errors, plural(d.errors));
        else if (rc < 0)
            log_plain("%s: %u error%s, not started", path, d.errors, plural(d.errors));
        rc = check_only ? (rc < 0) : rc < 0 ? 2 : -1;
    }
    explicit_bzero(buf, len);      /* a config may hold passwords */
    free(buf);
    return rc;
}

int cfg_file_load(struct ferry_cfg *cfg)
{
    struct cfg_diag d = { emit_run, NULL, 0, 0 };
    const char *path = cfg->config_path;
    char why[256];
    size_t len;
    char *buf = yc_read_file(path, &len, why, sizeof(why));
    if (!buf) {
        log_plain("%s: cannot read: %s", path, why);
        return -1;
    }
    int rc = -1;
    if (cfg_ss_json_mode(path, buf, len)) log_plain("%s is now a shadowsocks-libev config, not a ferry one", path);
    else if ((rc = cfg_load_string(path, buf, len, cfg, &d)) < 0)
        log_plain("%s: %u error%s", path, d.errors, plural(d.errors));
    explicit_bzero(buf, len);
    free(buf);
    return rc < 0 ? -1 : 0;
}

/* ---- reference tables ---- */

/* Markdown table cell: '|' escaped, no newlines. */
static void cell(FILE *out, const char *s)
{
    fputs("| ", out);
    for (; s && *s; s++) {
        if (*s == '|') fputs("\\|", out);
        else fputc(*s == '\n' ? ' ' : *s, out);
    }
    fputc(' ', out);
}

static void modes_text(int modes, char *out, size_t outlen)
{
    size_t used = 0;
    int all = 1;
    out[0] = '\0';
    for (int bit = 1; bit < (1 << 16); bit <<= 1)
        if (opt_mode_name(bit) && !(modes & bit)) all = 0;
    if (all) {
        snprintf(out, outlen, "all");
        return;
    }
    for (int bit = 1; bit < (1 << 16) && used < outlen; bit <<= 1)
        if ((modes & bit) && opt_mode_name(bit))
            used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", opt_mode_name(bit));
}

/* 3600000 -> "1h", 300000 -> "5m", 1500 -> "1500ms". */
static void ms_text(unsigned long ms, char *out, size_t outlen)
{
    if (ms && ms % 3600000 == 0) snprintf(out, outlen, "%luh", ms / 3600000);
    else if (ms && ms % 60000 == 0) snprintf(out, outlen, "%lum", ms / 60000);
    else if (ms && ms % 1000 == 0) snprintf(out, outlen, "%lus", ms / 1000);
    else snprintf(out, outlen, ms ? "%lums" : "%lu", ms);
}

static void duration_text(unsigned long min, unsigned long max, char *out, size_t outlen)
{
    char a[32], b[32];
    ms_text(min, a, sizeof(a));
    ms_text(max, b, sizeof(b));
    snprintf(out, outlen, "duration %s-%s", a, b);
}

static void opt_type_text(const struct opt_def *o, char *out, size_t outlen)
{
    const char *many = yc_opt_repeatable(o) ? "list of " : "";
    switch (o->type) {
    case OPT_UINT: snprintf(out, outlen, "integer %lu-%lu", o->min, o->max); break;
    case OPT_DURATION: duration_text(o->min, o->max, out, outlen); break;
    case OPT_FLAG: snprintf(out, outlen, "boolean"); break;
    case OPT_CUSTOM: snprintf(out, outlen, "%s`%s`", many, o->metavar ? o->metavar : "TEXT"); break;
    }
}

static void dump_opts(FILE *out, enum opt_scope scope)
{
    fprintf(out, "| key | flag | type | default | modes | meaning |\n|---|---|---|---|---|---|\n");
    for (const struct opt_def *o = opt_table; o->name; o++) {
        char buf[200], flag[80];
        if (o->scope != scope) continue;
        snprintf(buf, sizeof(buf), "`%s`", o->name);
        cell(out, buf);
        if (o->short_name) snprintf(flag, sizeof(flag), "`--%s`, `-%c`", o->name, o->short_name);
        else snprintf(flag, sizeof(flag), "`--%s`", o->name);
        cell(out, flag);
        opt_type_text(o, buf, sizeof(buf));
        cell(out, buf);
        snprintf(buf, sizeof(buf), "`%s`", o->defval ? o->defval : o->type == OPT_FLAG ? "false" : "");
        cell(out, o->defval || o->type == OPT_FLAG ? buf : "-");
        modes_text(o->modes, buf, sizeof(buf));
        cell(out, buf);
        cell(out, o->help);
        fputs("|\n", out);
    }
}

static void yk_type_text(const struct yk_def *t, char *buf, size_t n)
{
    size_t used;
    switch (t->type) {
    case YK_UINT: snprintf(buf, n, "integer %lu-%lu", t->min, t->max); break;
    case YK_DURATION: duration_text(t->min, t->max, buf, n); break;
    case YK_BOOL: snprintf(buf, n, "boolean"); break;
    case YK_STRING: snprintf(buf, n, "text, at most %lu bytes", t->max - 1); break;
    case YK_CUSTOM: snprintf(buf, n, "`%s`", t->metavar ? t->metavar : "TEXT"); break;
    case YK_ENUM:
        used = (size_t)snprintf(buf, n, "one of");
        for (size_t i = 0; t->choices[i] && used < n; i++)
            used += (size_t)snprintf(buf + used, n - used, "%s `%s`", i ? "," : "", t->choices[i]);
        break;
    }
}

static void dump_keys(FILE *out, const char *title, const struct yk_def *t)
{
    fprintf(out, "\n%s\n\n| key | type | default | status | meaning |\n|---|---|---|---|---|\n", title);
    for (; t->name; t++) {
        char buf[200];
        snprintf(buf, sizeof(buf), "`%s`", t->name);
        cell(out, buf);
        yk_type_text(t, buf, sizeof(buf));
        cell(out, buf);
        snprintf(buf, sizeof(buf), "`%s`", t->defval ? t->defval : "");
        cell(out, t->defval ? buf : "-");
        cell(out, yk_status(t));
        cell(out, t->help);
        fputs("|\n", out);
    }
}

void cfg_dump_options(FILE *out)
{
    fprintf(out, "Global options (top level of the file):\n\n");
    dump_opts(out, SCOPE_GLOBAL);
    fprintf(out, "\nListener options (in each entry of `listeners:`, besides `name` and `mode`):\n\n");
    dump_opts(out, SCOPE_LISTENER);
    dump_keys(out, "Upstream group keys (`upstreams: NAME: {...}`):", yk_group_keys);
    dump_keys(out, "Server keys (an item of `servers:` written as a mapping):", yk_server_keys);
    dump_keys(out, "Health-check keys (`health-check: {...}` in a group):", yk_health_keys);
}
