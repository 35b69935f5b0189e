/* yaml.h - `ferry run` config files (YAML) -> ferry_cfg.
 *
 * The file's keys are the option table's long flag names (options.c), so a
 * config key is validated by the same code as its command-line twin. The
 * schema and every key's status are in docs/CONFIG.md. Problems are
 * reported through a cfg_diag sink (diag.h), all of them, not the first.
 */
#ifndef FERRY_CFG_YAML_H
#define FERRY_CFG_YAML_H

#include <stddef.h>

#include "config/config.h"
#include "config/diag.h"

/* Loads a `ferry run` config file into cfg, which the caller zeroed; sets
 * cfg->listeners, cfg->groups and the global options. Returns 0 if no error
 * was reported, else -1; either way the caller releases cfg with cfg_free(). */
int cfg_load_file(const char *path, struct ferry_cfg *cfg, struct cfg_diag *d);
/* Same from memory; name is used in the diagnostics in place of a path. */
int cfg_load_string(const char *name, const void *buf, size_t len, struct ferry_cfg *cfg,
                    struct cfg_diag *d);

#endif
