/* cli.c - see cli.h.
 *
 * ferry [SUBCOMMAND] [OPTIONS]; SUBCOMMAND defaults to socks. Options are
 * --name VALUE, --name=VALUE or -x VALUE, all defined in options.c.
 */
#include "config/cli.h"

#include <stdlib.h>
#include <string.h>

#include "config/options.h"
#include "config/ssjson.h"

/* A mode's name for messages; "?" for none. */
static const char *mode_name(int mode)
{
    const char *n = opt_mode_name(mode);
    return n ? n : "?";
}

#define HELP_COL 43       /* where an option's text starts */
#define HELP_WIDTH 100    /* and the column it wraps before */

/* Prints text from column `col` on, wrapped at spaces before HELP_WIDTH,
 * continued at HELP_COL; ends the line. */
static void wrap(FILE *out, const char *text, size_t col)
{
    while (*text) {
        size_t room = HELP_WIDTH > col ? HELP_WIDTH - col : 1, n = strlen(text), cut = n;
        if (n > room) {
            for (cut = room; cut > 0 && text[cut] != ' '; cut--) {}
            if (cut == 0) cut = strcspn(text, " ");    /* one word longer than the room */
        }
        fprintf(out, "%.*s\n", (int)cut, text);
        text += cut;
        while (*text == ' ') text++;
        if (*text) fprintf(out, "%*s", HELP_COL, "");
        col = HELP_COL;
    }
}

/* The option's help with its default, folded into a closing parenthesis
 * when the help ends with one: "(0 = refuse at once; default 1024)". */
static void help_text(const struct opt_def *o, int mode, char *out, size_t outlen)
{
    const char *def = o->defval && strcmp(o->defval, "0") != 0 ? o->defval : NULL;
    size_t n = strlen(o->help);
    if (!def && mode == MODE_SOCKS && strcmp(o->name, "listen") == 0) def = CFG_SOCKS_LISTEN;
    if (!def) snprintf(out, outlen, "%s", o->help);
    else if (n && o->help[n - 1] == ')') snprintf(out, outlen, "%.*s; default %s)", (int)(n - 1), o->help, def);
    else snprintf(out, outlen, "%s (default %s)", o->help, def);
}

static void usage_option(FILE *out, const struct opt_def *o, int mode)
{
    char flag[80], shortf[8] = "    ", help[400];
    if (o->short_name) snprintf(shortf, sizeof(shortf), "-%c, ", o->short_name);
    snprintf(flag, sizeof(flag), "%s--%s%s%s", shortf, o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
    help_text(o, mode, help, sizeof(help));
    /* A flag too long for its column gets a line of its own. */
    if (strlen(flag) >= HELP_COL - 3) fprintf(out, "  %s\n%*s", flag, HELP_COL, "");
    else fprintf(out, "  %-*s ", HELP_COL - 3, flag);
    wrap(out, help, HELP_COL);
}

static void usage_general(FILE *out)
{
    fprintf(out, "ferry %s - TCP relay and SOCKS proxy\n\n"
                 "usage: ferry [SUBCOMMAND] [OPTIONS]\n"
                 "       ferry SUBCOMMAND --help\n"
                 "       ferry --dump-options     every option and config key, as Markdown tables\n"
                 "       ferry --version\n\n"
                 "subcommands:\n", FERRY_VERSION);
    for (size_t i = 0; i < OPT_NMODES; i++)
        fprintf(out, "  %-10s %s\n", opt_modes[i].name, opt_modes[i].summary);
    fprintf(out, "  %-10s %s\n  %-10s %s\n", "run", "many listeners from a YAML config: run -c FILE",
            "check", "validate a config file and exit: check -c FILE");
    fprintf(out, "\nWith no subcommand ferry runs 'socks' on %s.\n"
                 "Addresses: HOST:PORT, [v6]:PORT, :PORT or localhost:PORT. Durations: 250ms, 10s, 5m, 1h.\n"
                 "Signals: TERM or INT drains then stops (twice: at once), QUIT stops at once,\n"
                 "USR1 reopens --log-file (logrotate) and reconnects --syslog; HUP reloads;\n"
                 "USR2 is logged and ignored.\n",
            CFG_SOCKS_LISTEN);
}

void cli_usage(FILE *out, int mode)
{
    if (!mode) {
        usage_general(out);
        return;
    }
    if (mode == CLI_HELP_CONFIG) {
        fprintf(out, "usage: ferry run [-c] FILE [OPTIONS]     run the listeners of a YAML config file\n"
                     "       ferry check [-c] FILE [OPTIONS]   validate it: exit 0, or print every error and exit 1\n\n"
                     "Keys are the long option names; see docs/CONFIG.md or 'ferry --dump-options'.\n"
                     "OPTIONS: global options (--log-level, --threads, --api, ...) win over the file's.\n"
                     "A shadowsocks-libev JSON file is checked as one (run it with ferry ss-server or\n"
                     "ss-local -c FILE).\n");
        return;
    }
    fprintf(out, "usage: ferry %s [OPTIONS]\n\noptions:\n", mode_name(mode));
    if (mode & MODE_SS)
        fprintf(out, "  %-*s %s\n", HELP_COL - 3, "-c, --config FILE",
                "shadowsocks-libev JSON config (options given here win)");
    for (const struct opt_def *o = opt_table; o->name; o++)
        if (o->modes & mode) usage_option(out, o, mode);
}

int cli_add_listener(struct ferry_cfg *cfg, int mode, char *err, size_t errlen)
{
    cfg->listeners = calloc(1, sizeof(*cfg->listeners));
    if (!cfg->listeners) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cfg->nlisteners = 1;
    struct listener_cfg *l = &cfg->listeners[0];
    l->mode = mode;
    snprintf(l->name, sizeof(l->name), "%s", mode_name(mode));
    return opt_defaults(cfg, l, err, errlen);
}

/* Finds the option for argv[*i] and its value; advances *i past the value.
 * Forms: --name VALUE, --name=VALUE, -x VALUE, -xVALUE. Error messages
 * never quote a value (it may be a password). */
static const struct opt_def *take_option(int argc, char **argv, int *i, const char **val, const char *cmd,
                                         int mode, char *err, size_t errlen)
{
    const char *arg = argv[*i];
    const struct opt_def *o = NULL;
    const char *inline_val = NULL;
    char name[64];
    if (arg[1] == '-') {
        const char *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (n < sizeof(name)) {
            memcpy(name, arg + 2, n);
            name[n] = '\0';
            o = opt_find_long(name);
        }
        if (!o) {
            snprintf(err, errlen, "unknown option '--%.*s' (see 'ferry %s --help')", (int)(n > 40 ? 40 : n), arg + 2,
                     cmd);
            return NULL;
        }
        if (eq) inline_val = eq + 1;
    } else {
        o = arg[1] ? opt_find_short(arg[1], mode) : NULL;
        if (!o) {
            snprintf(err, errlen, "unknown option '-%.1s' (see 'ferry %s --help')", arg + 1, cmd);
            return NULL;
        }
        if (arg[2]) inline_val = arg + 2;
    }
    if (o->type == OPT_FLAG) {
        if (inline_val) {
            snprintf(err, errlen, "option '--%s' takes no value", o->name);
            return NULL;
        }
        *val = NULL;
        return o;
    }
    if (inline_val) {
        *val = inline_val;
    } else if (*i + 1 < argc) {
        *val = argv[++*i];
    } else {
        snprintf(err, errlen, "option '--%s' needs a value (%s)", o->name, o->metavar ? o->metavar : "VALUE");
        return NULL;
    }
    return o;
}

/* A global option after `ferry run|check`: checked now (on a scratch
 * config) so a bad value fails like any flag, kept to be applied after the
 * file's options (yaml.c, check.c). */
static int take_override(int argc, char **argv, int *i, struct ferry_cfg *cfg, const char *cmd, char *err,
                         size_t errlen)
{
    const char *val;
    char why[400];
    struct ferry_cfg scratch;
    const struct opt_def *o = take_option(argc, argv, i, &val, cmd, 0, err, errlen);
    if (!o) return -1;
    if (o->scope != SCOPE_GLOBAL) {
        snprintf(err, errlen, "'--%s' is a listener option: set it in the file (only global options, "
                 "such as --log-level, go on the command line of 'ferry %s')", o->name, cmd);
        return -1;
    }
    if (cfg->ncli_over == sizeof(cfg->cli_over) / sizeof(cfg->cli_over[0])) {
        snprintf(err, errlen, "too many options");
        return -1;
    }
    memset(&scratch, 0, sizeof(scratch));
    if (opt_apply(o, &scratch, NULL, val, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "--%s: %s", o->name, why);
        return -1;
    }
    cfg->cli_over[cfg->ncli_over] = o;
    cfg->cli_over_val[cfg->ncli_over++] = val;
    return 0;
}

/* ---- argv scanning for `-c FILE` ---- */

int cli_config_flag(const char *arg)
{
    if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) return 2;
    return strncmp(arg, "--config=", 9) == 0 ? 1 : 0;
}

/* The option an argument names, and whether its value is in the same
 * argument; NULL when it is no table option (cli_parse reports those). */
static const struct opt_def *arg_option(const char *arg, int mode, int *inline_val)
{
    char name[64];
    *inline_val = 0;
    if (arg[0] != '-') return NULL;
    if (arg[1] != '-') return arg[1] && !arg[2] ? opt_find_short(arg[1], mode) : NULL;
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    if (n >= sizeof(name)) return NULL;
    memcpy(name, arg + 2, n);
    name[n] = '\0';
    *inline_val = eq != NULL;
    return opt_find_long(name);
}

/* Finds -c FILE and the options given in argv[first..]. */
static int scan_argv(int argc, char **argv, int first, int mode, const char **path, const char **given,
                     size_t cap, char *err, size_t errlen)
{
    size_t ng = 0;
    int inl;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        int cf = cli_config_flag(arg);
        const struct opt_def *o = cf ? NULL : arg_option(arg, mode, &inl);
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h") || !strcmp(arg, "--version") || !strcmp(arg, "-V"))
            return *path = NULL, 0;
        if (cf && (*path || (cf == 2 && i + 1 == argc))) {
            snprintf(err, errlen, *path ? "option '%s' given twice" : "option '%s' needs a value (FILE)", arg);
            return -1;
        }
        if (cf) *path = cf == 1 ? arg + 9 : argv[++i];
        if (!o) continue;
        if (ng + 1 < cap) given[ng++] = o->name;
        if (o->type != OPT_FLAG && !inl) i++;
    }
    given[ng] = NULL;
    return 0;
}

/* ss-server and ss-local: a shadowsocks-libev JSON file given with -c is
 * loaded before the flags are applied, skipping what the flags set, so
 * that the command line wins (as with ss-server). 0 also without -c. */
static int ss_config(int argc, char **argv, int first, struct ferry_cfg *cfg, struct listener_cfg *l,
                     char *err, size_t errlen)
{
    const char *given[64], *path = NULL;
    if (scan_argv(argc, argv, first, l->mode, &path, given, 64, err, errlen) < 0) return -1;
    return path ? cfg_ss_json_file(path, cfg, l, given, err, errlen) : 0;
}

/* ferry run|check [-c] FILE [GLOBAL OPTIONS]: main loads the file
 * (config/check.c). One file: a second one is refused, not merged. */
static int parse_file_cmd(int argc, char **argv, struct ferry_cfg *cfg, enum cli_action *action,
                          int *help_mode, char *err, size_t errlen)
{
    const char *cmd = argv[1];
    *action = strcmp(cmd, "check") == 0 ? CLI_CHECK : CLI_RUN;
    for (int i = 2; i < argc; i++) {
        int n = cli_config_flag(argv[i]);
        const char *file = NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *action = CLI_HELP;
            *help_mode = CLI_HELP_CONFIG;
            return 0;
        }
        if (n == 2 && i + 1 == argc) {
            snprintf(err, errlen, "option '%s' needs a value (FILE)", argv[i]);
            return -1;
        }
        if (n) file = n == 1 ? argv[i] + 9 : argv[++i];
        else if (argv[i][0] != '-') file = argv[i];
        else if (take_override(argc, argv, &i, cfg, cmd, err, errlen) < 0) return -1;
        if (file && cfg->config_path) {
            snprintf(err, errlen, "'%s' and '%s': ferry %s takes one config file", cfg->config_path, file, cmd);
            return -1;
        }
        if (file) cfg->config_path = file;
    }
    if (!cfg->config_path || !cfg->config_path[0]) {
        snprintf(err, errlen, "usage: ferry %s [-c] FILE", cmd);
        return -1;
    }
    return 0;
}

int cli_parse(int argc, char **argv, struct ferry_cfg *cfg, enum cli_action *action,
              int *help_mode, char *err, size_t errlen)
{
    int i = 1, mode = MODE_SOCKS;
    *action = CLI_RUN;
    *help_mode = 0;
    if (i < argc && (strcmp(argv[i], "run") == 0 || strcmp(argv[i], "check") == 0))
        return parse_file_cmd(argc, argv, cfg, action, help_mode, err, errlen);
    if (i < argc && argv[i][0] != '-') {
        size_t k, n = OPT_NMODES;
        for (k = 0; k < n && strcmp(argv[i], opt_modes[k].name) != 0; k++) {}
        if (k == n) {
            snprintf(err, errlen, "unknown subcommand '%s' (see 'ferry --help')", argv[i]);
            return -1;
        }
        mode = opt_modes[k].mode;
        *help_mode = mode;
        i++;
    }
    if (cli_add_listener(cfg, mode, err, errlen) < 0) return -1;
    struct listener_cfg *l = &cfg->listeners[0];
    if ((mode & MODE_SS) && ss_config(argc, argv, i, cfg, l, err, errlen) < 0) return -1;
    for (; i < argc; i++) {
        const char *val, *arg = argv[i];
        char why[400];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) { *action = CLI_HELP; return 0; }
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) { *action = CLI_VERSION; return 0; }
        if (strcmp(arg, "--dump-options") == 0) { *action = CLI_DUMP_OPTIONS; return 0; }
        if (cli_config_flag(arg)) {     /* -c FILE: loaded above */
            if (!(mode & MODE_SS)) {
                snprintf(err, errlen, "'%s' applies to ss-server and ss-local only "
                         "(for YAML: ferry run -c FILE)", arg);
                return -1;
            }
            i += cli_config_flag(arg) - 1;
            continue;
        }
        if (arg[0] != '-') {
            snprintf(err, errlen, "unexpected argument '%s' (see 'ferry --help')", arg);
            return -1;
        }
        const struct opt_def *o = take_option(argc, argv, &i, &val, mode_name(mode), mode, err, errlen);
        if (!o) return -1;
        if (!(o->modes & mode)) {
            snprintf(err, errlen, "option '--%s' does not apply to '%s'", o->name, mode_name(mode));
            return -1;
        }
        int applied = opt_apply(o, cfg, l, val, why, sizeof(why));
        /* Secrets on the command line show in ps (/proc/PID/cmdline reads
         * this memory): blank them once copied, in both spellings (--user X
         * and --user=X), also when the value was refused. */
        size_t soff, sn;
        if (val && opt_secret_span(o, val, &soff, &sn)) memset((char *)val + soff, 'x', sn);
        if (applied < 0) {
            snprintf(err, errlen, "--%s: %s", o->name, why);
            return -1;
        }
    }
    if (cfg_listener_finish(l, err, errlen) < 0) return -1;
    const char *key;
    return cfg_global_finish(cfg, &key, err, errlen);
}
