/* check.c - see check.h. */
#include "config/check.h"

#include <string.h>

#include "config/cli.h"
#include "config/options.h"
#include "config/yaml.h"
#include "config/yaml_int.h"
#include "obs/log.h"

static void emit_stderr(void *arg, int is_error, const char *line)
{
    (void)arg;
    (void)is_error;
    fprintf(stderr, "%s\n", line);
}

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

int cfg_file_main(struct ferry_cfg *cfg, int check_only)
{
    struct cfg_diag d = { emit_stderr, NULL, 0, 0 };
    const char *path = cfg->config_path;
    int rc = cfg_load_file(path, cfg, &d);
    if (check_only) {
        if (rc == 0)
            printf("%s: ok (%zu listener%s, %zu upstream group%s, %u warning%s)\n", path, cfg->nlisteners,
                   plural(cfg->nlisteners), cfg->ngroups, plural(cfg->ngroups), d.warnings, plural(d.warnings));
        else
            fprintf(stderr, "%s: %u error%s\n", path, d.errors, plural(d.errors));
        return rc == 0 ? 0 : 1;
    }
    if (rc == 0) return -1;
    log_plain("%s: %u error%s, not started", path, d.errors, plural(d.errors));
    return 2;
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
        if (cli_mode_name(bit) && !(modes & bit)) all = 0;
    if (all) {
        snprintf(out, outlen, "all");
        return;
    }
    for (int bit = 1; bit < (1 << 16) && used < outlen; bit <<= 1)
        if ((modes & bit) && cli_mode_name(bit))
            used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", cli_mode_name(bit));
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
