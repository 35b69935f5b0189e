/* check.h - `ferry run -c FILE`, `ferry check -c FILE`, and the option
 * reference that docs/CONFIG.md embeds (`ferry --dump-options`). */
#ifndef FERRY_CFG_CHECK_H
#define FERRY_CFG_CHECK_H

#include <stdio.h>

#include "config/config.h"

/* Loads cfg->config_path into cfg, every diagnostic on stderr as
 * "FILE:LINE:COL: message". With check_only, returns the exit code (0 valid,
 * 1 invalid) after an "ok" line on stdout. Otherwise returns -1 when the
 * config loaded (go on and run it), or 2 when it did not. */
int cfg_file_main(struct ferry_cfg *cfg, int check_only);

/* Loads cfg->config_path into cfg for a reload: every diagnostic logged as
 * "FILE:LINE:COL: message", then "FILE: N errors" when it did not load. 0
 * loaded, -1 not. */
int cfg_file_load(struct ferry_cfg *cfg);

/* The option table and the config-file-only keys as Markdown tables. */
void cfg_dump_options(FILE *out);

#endif
