/* ssjson.h - shadowsocks-libev JSON configs (`ferry ss-server -c FILE`). */
#ifndef FERRY_CFG_SSJSON_H
#define FERRY_CFG_SSJSON_H

#include <stddef.h>

#include "config/config.h"
#include "config/diag.h"

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
/* For `ferry ss-server|ss-local ... -c FILE`: loads FILE into l, skipping
 * the options named in `given` (set by flags). Diagnostics go to stderr.
 * 0, or -1 with err. */
int cfg_ss_json_file(const char *path, struct ferry_cfg *cfg, struct listener_cfg *l, const char *const *given,
                     char *err, size_t errlen);

#endif
