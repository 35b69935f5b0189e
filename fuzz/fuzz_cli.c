/* fuzz_cli.c - libFuzzer target for the command line: cli_parse + cfg_free.
 *
 * The input is split on NUL bytes into arguments after argv[0] = "ferry"
 * (at most 64 of them, 4 KiB in all). Must never crash or leak (ASan's leak
 * checker runs at exit and after every input with -detect_leaks=1, the
 * default). Invariants checked (abort() on violation):
 *   - cli_parse returns 0 or -1; on -1 err is a non-empty string that fits;
 *   - a successful CLI_RUN parse yields one listener whose every field is
 *     within the bounds the option table promises: 1..16 listen addresses,
 *     a relay has 1..64 upstreams with a host, a port and a weight of
 *     1..1000, users are 1..255 bytes each with matching lengths, timeouts
 *     within their ranges (and handshake-timeout only for socks).
 *
 * Inputs that mention "users-file" are skipped: its value is a path, and a
 * fuzzer-chosen path could name a FIFO or /dev/zero and block the run
 * (the latter is a real hang in parse_users_file, reported separately).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/cli.h"
#include "config/options.h"
#include "config/yaml.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define INPUT_MAX 4096
#define MAXARGS 64
#define ERRLEN 256

static void check_users(const struct listener_cfg *l)
{
    for (size_t i = 0; i < l->nusers; i++) {
        const struct user_cfg *u = &l->users[i];

        CHECK(u->name_len >= 1 && strlen(u->name) == u->name_len);
        CHECK(u->pass_len >= 1 && strlen(u->pass) == u->pass_len);
    }
}

static void check_upstreams(const struct listener_cfg *l)
{
    CHECK(l->nupstreams <= CFG_MAX_UPSTREAMS);
    CHECK(l->mode != MODE_RELAY || l->nupstreams >= 1);
    for (size_t i = 0; i < l->nupstreams; i++) {
        const struct upstream_cfg *u = &l->upstreams[i];

        /* An SRV name has no port: its records give them. */
        CHECK(u->hp.host[0] != '\0' && (u->hp.port != 0 || u->srv));
        CHECK(u->weight >= 1 && u->weight <= 1000);
    }
}

static void check_listener(const struct ferry_cfg *cfg)
{
    const struct listener_cfg *l;

    CHECK(cfg->nlisteners == 1 && cfg->listeners != NULL);
    l = &cfg->listeners[0];
    CHECK(l->mode == MODE_SOCKS || l->mode == MODE_RELAY || l->mode == MODE_SS_SERVER ||
          l->mode == MODE_SS_LOCAL || l->mode == MODE_MUX_SERVER || l->mode == MODE_MUX_LOCAL);
    /* Secrets never outlive key derivation. */
    CHECK(l->ss_password == NULL && l->ss_key_b64 == NULL);
    CHECK((l->mode != MODE_SS_LOCAL && l->mode != MODE_MUX_LOCAL) || l->has_ss_server);
    CHECK(l->mode != MODE_MUX_SERVER || !l->mux_dynamic == !!l->nupstreams);
    CHECK(l->nlisten >= 1 && l->nlisten <= CFG_MAX_LISTEN);
    check_upstreams(l);
    check_users(l);
    CHECK(l->connect_timeout_ms >= 1 && l->connect_timeout_ms <= 3600000);
    CHECK(l->idle_timeout_ms >= 1 && l->idle_timeout_ms <= 4000000000u);
    CHECK(l->resolve_timeout_ms >= 1 && l->resolve_timeout_ms <= 600000);
    if (l->mode != MODE_RELAY)
        CHECK(l->handshake_timeout_ms >= 1 && l->handshake_timeout_ms <= 3600000);
    else
        CHECK(l->handshake_timeout_ms == 0 && l->nusers == 0 && l->dest_acl.n == 0);
    CHECK(l->backlog >= 1 && l->backlog <= 65535);
    CHECK(l->retries <= 16 && l->maxconn <= 10000000);
    CHECK(strnlen(l->dns_servers, sizeof l->dns_servers) < sizeof l->dns_servers);
    CHECK(cfg->threads <= 256 && cfg->drain_timeout_ms <= 3600000);
}

/* Splits buf (NUL-terminated by the caller) at NUL bytes into argv[1..]. */
static int split_args(char *buf, size_t len, char **argv)
{
    int argc = 0;
    char *p = buf, *end = buf + len;

    argv[argc++] = (char *)"ferry";
    while (p < end && argc < MAXARGS + 1) {
        argv[argc++] = p;
        p += strlen(p) + 1;
    }
    argv[argc] = NULL;
    return argc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = size < INPUT_MAX ? size : INPUT_MAX;
    char *argv[MAXARGS + 2], err[ERRLEN];
    struct ferry_cfg cfg;
    enum cli_action action;
    int help_mode, argc, rc;
    char *buf;

    if (memmem(data, n, "users-file", 10))
        return 0;
    buf = malloc(n + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, n);
    buf[n] = '\0';
    argc = split_args(buf, n, argv);
    for (int i = 1; i < argc; i++)
        if (cli_config_flag(argv[i])) {      /* ss-server -c FILE reads a path, like users-file */
            free(buf);
            return 0;
        }
    memset(&cfg, 0, sizeof cfg);
    err[0] = '\0';
    rc = cli_parse(argc, argv, &cfg, &action, &help_mode, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc < 0) {
        size_t e = strnlen(err, sizeof err);

        CHECK(e > 0 && e < sizeof err);
    } else if (action == CLI_RUN && !cfg.config_path) {
        check_listener(&cfg);
    } else if (action == CLI_RUN || action == CLI_CHECK) {
        CHECK(cfg.config_path && cfg.config_path[0] && cfg.nlisteners == 0);   /* ferry run|check -c FILE */
    } else {
        CHECK(action == CLI_HELP || action == CLI_VERSION || action == CLI_DUMP_OPTIONS);
    }
    cfg_free(&cfg);
    free(buf);
    return 0;
}
