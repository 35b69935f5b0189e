/* cli.c - see cli.h.
 *
 * ferry [SUBCOMMAND] [OPTIONS]; SUBCOMMAND defaults to socks. Options are
 * --name VALUE, --name=VALUE or -x VALUE, all defined in options.c.
 */
#include "config/cli.h"

#include <stdlib.h>
#include <string.h>

#include "config/options.h"
#include "config/yaml.h"

static const struct {
    const char *name;
    int mode;
    const char *summary;
} subcommands[] = {
    { "socks", MODE_SOCKS, "SOCKS 4, 4a and 5 server (the default: 127.0.0.1:1080)" },
    { "relay", MODE_RELAY, "TCP relay / load balancer to one or more upstreams" },
    { "ss-server", MODE_SS_SERVER, "Shadowsocks AEAD server (wire compatible with shadowsocks-libev)" },
    { "ss-local", MODE_SS_LOCAL, "SOCKS front that tunnels through a Shadowsocks server" },
};

static const char *mode_name(int mode)
{
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        if (subcommands[i].mode == mode) return subcommands[i].name;
    return "?";
}

void cli_usage(FILE *out, int mode)
{
    if (!mode) {
        fprintf(out, "ferry %s - TCP relay and SOCKS proxy\n\n"
                     "usage: ferry [SUBCOMMAND] [OPTIONS]\n"
                     "       ferry SUBCOMMAND --help\n"
                     "       ferry --version\n\n"
                     "subcommands:\n", FERRY_VERSION);
        for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
            fprintf(out, "  %-8s %s\n", subcommands[i].name, subcommands[i].summary);
        fprintf(out, "  %-8s %s\n  %-8s %s\n", "run", "many listeners from a YAML config: run -c FILE",
                "check", "validate a config file and exit: check -c FILE");
        fprintf(out, "\nWith no subcommand ferry runs 'socks' on 127.0.0.1:1080.\n"
                     "Addresses: HOST:PORT, [v6]:PORT or :PORT. Durations: 250ms, 10s, 5m, 1h.\n");
        return;
    }
    if (mode == CLI_HELP_CONFIG) {
        fprintf(out, "usage: ferry run -c FILE     run the listeners of a YAML config file\n"
                     "       ferry check -c FILE   validate it: exit 0, or print every error and exit 1\n\n"
                     "Keys are the long option names; see docs/CONFIG.md or 'ferry --dump-options'.\n");
        return;
    }
    fprintf(out, "usage: ferry %s [OPTIONS]\n\noptions:\n", mode_name(mode));
    if (mode & MODE_SS)
        fprintf(out, "  %-40s %s\n", "-c, --config FILE", "shadowsocks-libev JSON config (options given here win)");
    for (const struct opt_def *o = opt_table; o->name; o++) {
        char flag[64], shortf[8] = "    ";
        if (!(o->modes & mode)) continue;
        if (o->short_name) snprintf(shortf, sizeof(shortf), "-%c, ", o->short_name);
        snprintf(flag, sizeof(flag), "%s--%s%s%s", shortf, o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        fprintf(out, "  %-40s %s", flag, o->help);
        if (o->defval && strcmp(o->defval, "0") != 0) fprintf(out, " (default %s)", o->defval);
        fputc('\n', out);
    }
}

static int add_listener(struct ferry_cfg *cfg, int mode, char *err, size_t errlen)
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

/* Finds the option for argv[*i] and its value; advances *i past the value. */
/* Finds the option for argv[*i] and its value; advances *i past the value.
 * Forms: --name VALUE, --name=VALUE, -x VALUE, -xVALUE. Error messages
 * never quote a value (it may be a password). */
static const struct opt_def *take_option(int argc, char **argv, int *i, const char **val,
                                         char *err, size_t errlen)
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
            snprintf(err, errlen, "unknown option '--%.*s' (see 'ferry --help')", (int)(n > 40 ? 40 : n), arg + 2);
            return NULL;
        }
        if (eq) inline_val = eq + 1;
    } else {
        o = arg[1] ? opt_find_short(arg[1]) : NULL;
        if (!o) {
            snprintf(err, errlen, "unknown option '-%.1s' (see 'ferry --help')", arg + 1);
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

/* ferry run|check -c FILE: main loads the file (config/check.c). */
static int parse_file_cmd(int argc, char **argv, struct ferry_cfg *cfg, enum cli_action *action,
                          int *help_mode, char *err, size_t errlen)
{
    const char *cmd = argv[1];
    *action = strcmp(cmd, "check") == 0 ? CLI_CHECK : CLI_RUN;
    for (int i = 2; i < argc; i++) {
        int n = cfg_config_flag(argv[i]);
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *action = CLI_HELP;
            *help_mode = CLI_HELP_CONFIG;
            return 0;
        }
        if (n == 0 || (n == 2 && i + 1 == argc)) {
            snprintf(err, errlen, n ? "option '%s' needs a value (FILE)" : "unexpected argument '%s' "
                     "(usage: ferry %s -c FILE)", argv[i], cmd);
            return -1;
        }
        cfg->config_path = n == 1 ? argv[i] + 9 : argv[++i];
    }
    if (!cfg->config_path || !cfg->config_path[0]) {
        snprintf(err, errlen, "usage: ferry %s -c FILE", cmd);
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
        size_t k, n = sizeof(subcommands) / sizeof(subcommands[0]);
        for (k = 0; k < n && strcmp(argv[i], subcommands[k].name) != 0; k++) {}
        if (k == n) {
            snprintf(err, errlen, "unknown subcommand '%s' (see 'ferry --help')", argv[i]);
            return -1;
        }
        mode = subcommands[k].mode;
        *help_mode = mode;
        i++;
    }
    if (add_listener(cfg, mode, err, errlen) < 0) return -1;
    struct listener_cfg *l = &cfg->listeners[0];
    if ((mode & MODE_SS) && cfg_ss_argv(argc, argv, i, cfg, l, err, errlen) < 0) return -1;
    for (; i < argc; i++) {
        const char *val, *arg = argv[i];
        char why[400];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) { *action = CLI_HELP; return 0; }
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) { *action = CLI_VERSION; return 0; }
        if (strcmp(arg, "--dump-options") == 0) { *action = CLI_DUMP_OPTIONS; return 0; }
        if (cfg_config_flag(arg)) {     /* -c FILE: loaded above */
            if (!(mode & MODE_SS)) {
                snprintf(err, errlen, "'%s' applies to ss-server and ss-local only "
                         "(for YAML: ferry run -c FILE)", arg);
                return -1;
            }
            i += cfg_config_flag(arg) - 1;
            continue;
        }
        if (arg[0] != '-') {
            snprintf(err, errlen, "unexpected argument '%s' (see 'ferry --help')", arg);
            return -1;
        }
        const struct opt_def *o = take_option(argc, argv, &i, &val, err, errlen);
        if (!o) return -1;
        if (!(o->modes & mode)) {
            snprintf(err, errlen, "option '--%s' does not apply to '%s'", o->name, mode_name(mode));
            return -1;
        }
        int applied = opt_apply(o, cfg, l, val, why, sizeof(why));
        /* Secrets on the command line show in ps (/proc/PID/cmdline reads
         * this memory): blank them once copied, in both spellings (--user X
         * and --user=X), also when the value was refused. */
        if (val && opt_is_secret(o)) memset((char *)val, 'x', strlen(val));
        if (applied < 0) {
            snprintf(err, errlen, "--%s: %s", o->name, why);
            return -1;
        }
    }
    if (cfg_listener_finish(l, err, errlen) < 0) return -1;
    const char *key;
    return cfg_global_finish(cfg, &key, err, errlen);
}

int cli_mode_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        if (strcmp(subcommands[i].name, name) == 0) return subcommands[i].mode;
    return 0;
}

const char *cli_mode_name(int mode)
{
    const char *n = mode_name(mode);
    return strcmp(n, "?") == 0 ? NULL : n;
}
