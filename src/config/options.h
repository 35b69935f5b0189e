/* options.h - the option table: one entry per setting (STYLE habit 10).
 *
 * An entry names the flag (also its config-file key), the modes it applies
 * to, its type and bounds, its default (as text, parsed by the same code as
 * user input, so defaults cannot drift from validation) and its help line.
 */
#ifndef FERRY_OPTIONS_H
#define FERRY_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

enum opt_type {
    OPT_UINT,         /* unsigned, bounded by min..max */
    OPT_DURATION,     /* "250ms", "10s", "5m", "1h" or bare seconds -> ms */
    OPT_FLAG,         /* no value */
    OPT_CUSTOM,       /* parsed by opt->parse */
};

enum opt_scope { SCOPE_GLOBAL, SCOPE_LISTENER };

struct opt_def {
    const char *name;             /* "connect-timeout" -> --connect-timeout */
    char short_name;              /* 'l' -> -l, or 0 */
    enum opt_type type;
    enum opt_scope scope;
    int modes;                    /* MODE_* bits the option is valid for */
    size_t offset;                /* field in ferry_cfg or listener_cfg */
    unsigned long min, max;
    const char *defval;           /* NULL = no default */
    int (*parse)(void *base, const char *val, char *err, size_t errlen);
    const char *metavar;
    const char *help;
};

extern const struct opt_def opt_table[];

/* The listener modes, by subcommand name ("relay"), in --help order. */
struct opt_mode {
    const char *name;
    int mode;                     /* MODE_* */
    const char *summary;
};
#define OPT_NMODES 6
extern const struct opt_mode opt_modes[OPT_NMODES];
/* Mode of a name, or 0; and back (NULL if none). */
int opt_mode_by_name(const char *name);
const char *opt_mode_name(int mode);

/* Listener and group names, in the config file and through the API: 1 to
 * CFG_NAME_MAX letters, digits, '-', '_' or '.', so a name is one token in
 * a log line's key=value and one segment of an API path. */
#define CFG_NAME_MAX 31
int cfg_name_ok(const char *s);

const struct opt_def *opt_find_long(const char *name);
/* 1 if the option's value is a password or key (blanked in argv once read). */
int opt_is_secret(const struct opt_def *o);
/* The part of val to blank in argv: all of a secret option's value, the
 * password inside a --via URL. 1 with [*off, *off + *n), else 0. */
int opt_secret_span(const struct opt_def *o, const char *val, size_t *off, size_t *n);
/* The option a short letter names in a mode: a letter may mean one thing
 * in one mode and another elsewhere, as ss-libev's -u (UDP) beside the
 * balancer's -u (upstream). mode 0, or no option of the mode: the first. */
const struct opt_def *opt_find_short(char c, int mode);

/* Applies one value to the right struct. Returns 0 or -1 with err naming
 * the value (the caller adds the flag or config line). */
int opt_apply(const struct opt_def *o, struct ferry_cfg *g, struct listener_cfg *l,
              const char *val, char *err, size_t errlen);
/* Fills defaults for every option valid in the listener's mode. */
int opt_defaults(struct ferry_cfg *g, struct listener_cfg *l, char *err, size_t errlen);

int opt_parse_duration(const char *s, unsigned *ms);
/* "N", "Nk", "NM", "NG" (powers of 1024) -> bytes; 0 or -1. */
int opt_parse_size(const char *s, uint64_t *bytes);

#endif
