/* yaml.h - config files (YAML, or shadowsocks-libev JSON) -> ferry_cfg.
 *
 * The file's keys are the option table's long flag names (options.c), so a
 * config key is validated by the same code as its command-line twin. The
 * schema and every key's status are in docs/CONFIG.md.
 *
 * Loading does not stop at the first problem: every error and warning is
 * reported as one line "FILE:LINE:COL: message" (warnings say "warning: "
 * after the position), sorted by position, through a cfg_diag sink.
 */
#ifndef FERRY_CFG_YAML_H
#define FERRY_CFG_YAML_H

#include <stddef.h>

#include "config/config.h"

/* Where diagnostics go. emit() receives one complete line without a newline;
 * it may be NULL (count only). The loader adds to the counters. */
struct cfg_diag {
    void (*emit)(void *arg, int is_error, const char *line);
    void *arg;
    unsigned errors, warnings;
};

/* Loads a `ferry run` config file into cfg, which the caller zeroed; sets
 * cfg->listeners, cfg->groups and the global options. Returns 0 if no error
 * was reported, else -1; either way the caller releases cfg with cfg_free(). */
int cfg_load_file(const char *path, struct ferry_cfg *cfg, struct cfg_diag *d);
/* Same from memory; name is used in the diagnostics in place of a path. */
int cfg_load_string(const char *name, const void *buf, size_t len, struct ferry_cfg *cfg,
                    struct cfg_diag *d);

/* shadowsocks-libev JSON config (`ferry ss-server -c config.json`) applied to
 * the one listener l of mode l->mode. Keys whose option in `given` (a
 * NULL-terminated list of long option names set on the command line) is
 * listed are skipped: the command line wins, as with ss-server. Returns 0 or
 * -1 when an error was reported. */
int cfg_load_ss_json(const char *path, struct ferry_cfg *g, struct listener_cfg *l,
                     const char *const *given, struct cfg_diag *d);

/* Same from memory (name: for the diagnostics). */
int cfg_load_ss_json_buf(const char *name, const void *buf, size_t len, struct ferry_cfg *g,
                         struct listener_cfg *l, const char *const *given, struct cfg_diag *d);
/* MODE_SS_LOCAL or MODE_SS_SERVER when the text is a shadowsocks-libev
 * config (a mapping without `listeners:` but with `server`, `server_port`,
 * `password`, `method`, `key` or `local_port`; ss-local when `local_port`
 * is there), else 0. Reports nothing. */
int cfg_ss_json_mode(const char *name, const void *buf, size_t len);

/* Number of argv slots a config-file flag takes: 2 for "-c FILE" and
 * "--config FILE", 1 for "--config=FILE", 0 for any other argument. */
int cfg_config_flag(const char *arg);
/* For `ferry ss-server|ss-local ... -c FILE`, before cli_parse applies the
 * flags in argv[first..]: loads FILE into l, skipping what the flags set.
 * Diagnostics go to stderr. 0 (also when there is no -c), or -1 with err. */
int cfg_ss_argv(int argc, char **argv, int first, struct ferry_cfg *cfg, struct listener_cfg *l,
                char *err, size_t errlen);

#endif
