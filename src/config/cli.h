/* cli.h - command line -> ferry_cfg, through the option table. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "config/config.h"

#define FERRY_VERSION "0.1.0"

enum cli_action { CLI_RUN, CLI_HELP, CLI_VERSION, CLI_CHECK, CLI_DUMP_OPTIONS };

/* help_mode for `ferry run|check --help`. */
#define CLI_HELP_CONFIG (-1)

/* Parses argv. On error returns -1 with a one-line message in err that names
 * the bad flag or value (the caller prints it and exits 2). `ferry run|check
 * -c FILE` only sets cfg->config_path (and CLI_CHECK): main loads the file. */
int cli_parse(int argc, char **argv, struct ferry_cfg *cfg, enum cli_action *action,
              int *help_mode, char *err, size_t errlen);
void cli_usage(FILE *out, int mode);
/* cfg's one listener, of mode, with the option table's defaults, as a
 * subcommand starts it. 0, or -1 with err. */
int cli_add_listener(struct ferry_cfg *cfg, int mode, char *err, size_t errlen);

/* Number of argv slots a config-file flag takes: 2 for "-c FILE" and
 * "--config FILE", 1 for "--config=FILE", 0 for any other argument. */
int cli_config_flag(const char *arg);

#endif
