/* fuzz_config.c - libFuzzer target for config files: the bytes are a YAML
 * (or JSON) config given to cfg_load_string(), then cfg_free().
 *
 * Must never crash, hang or leak (ASan's leak checker runs after every input
 * with -detect_leaks=1, the default). Invariants checked (abort() on
 * violation):
 *   - cfg_load_string returns 0 exactly when no error was reported, and every
 *     diagnostic line is non-empty and starts with the file name;
 *   - a config that loaded has 1..256 listeners, each with a name, a known
 *     mode, 1..16 listen addresses; a relay has 1..64 upstreams with a host,
 *     a port and a weight of 1..1000; a listener's group is one of the
 *     config's groups.
 *
 * Inputs that mention "-file" are skipped: users-file and password-file take
 * a path, and a fuzzer-chosen path could name a FIFO or /dev/zero.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/cli.h"
#include "config/options.h"
#include "config/yaml.h"
#include "obs/log.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define INPUT_MAX 65536

static void check_line(void *arg, int is_error, const char *line)
{
    (void)arg;
    (void)is_error;
    CHECK(line && strncmp(line, "f.yaml", 6) == 0 && strlen(line) > 8);
}

static void check_listener(const struct ferry_cfg *cfg, const struct listener_cfg *l)
{
    CHECK(l->name[0] != '\0' && opt_mode_name(l->mode) != NULL);
    CHECK(l->nlisten >= 1 && l->nlisten <= CFG_MAX_LISTEN);
    CHECK(l->nupstreams <= CFG_MAX_UPSTREAMS);
    CHECK(l->mode != MODE_RELAY || l->nupstreams >= 1);
    for (size_t i = 0; i < l->nupstreams; i++) {
        const struct upstream_cfg *u = &l->upstreams[i];
        CHECK(u->hp.host[0] != '\0' && u->hp.port != 0);
        CHECK(u->weight >= 1 && u->weight <= 1000);
    }
    CHECK(!l->group || (l->group >= cfg->groups && l->group < cfg->groups + cfg->ngroups));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ferry_cfg cfg;
    struct cfg_diag d = { check_line, NULL, 0, 0 };
    int rc;

    if (size > INPUT_MAX || memmem(data, size, "-file", 5))
        return 0;
    log_set_level(LOG_QUIET);
    memset(&cfg, 0, sizeof cfg);
    rc = cfg_load_string("f.yaml", data, size, &cfg, &d);
    CHECK(rc == 0 || rc == -1);
    CHECK((rc == 0) == (d.errors == 0));
    if (rc == 0) {
        CHECK(cfg.nlisteners >= 1 && cfg.nlisteners <= 256);
        for (size_t i = 0; i < cfg.nlisteners; i++)
            check_listener(&cfg, &cfg.listeners[i]);
    }
    cfg_free(&cfg);
    return 0;
}
