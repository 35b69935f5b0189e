/* ssjson.c - shadowsocks-libev JSON configs for `ferry ss-server -c FILE`
 * and `ferry ss-local -c FILE` (libyaml reads JSON: it is YAML 1.2 flow).
 *
 * Each JSON key maps to an option of the table and goes through opt_apply,
 * like a flag. Options given on the command line win: the JSON keys that
 * would set them are skipped. Keys ferry has no use for are accepted with a
 * warning when ignoring them is harmless, and are errors when it is not
 * (plugins, ACL files, several ports): ferry would not do what the file asks.
 */
#include "config/ssjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/options.h"
#include "config/yaml_node.h"
#include "obs/log.h"

enum ss_action {
    SS_OPT,          /* value -> option `opt` */
    SS_ADDR,         /* server, server_port, local_address, local_port: combined below */
    SS_WARN,         /* accepted, ignored with a warning (when not false/empty) */
    SS_ERROR,        /* refused: ignoring it would change what the proxy does */
};

struct ss_key {
    const char *json;
    enum ss_action action;
    const char *opt;         /* SS_OPT: option; else the reason shown */
    const char *given;       /* options that, on the command line, make ferry skip this key */
};

static const struct ss_key ss_keys[] = {
    { "server", SS_ADDR, NULL, NULL },
    { "server_port", SS_ADDR, NULL, NULL },
    { "local_address", SS_ADDR, NULL, NULL },
    { "local_port", SS_ADDR, NULL, NULL },
    { "password", SS_OPT, "password", " password password-file key " },
    { "key", SS_OPT, "key", " password password-file key " },
    { "method", SS_OPT, "method", " method " },
    { "timeout", SS_OPT, "idle-timeout", " idle-timeout " },
    { "nameserver", SS_OPT, "dns-server", " dns-server " },
    { "ipv6_first", SS_OPT, "prefer-ipv6", " prefer-ipv6 " },
    { "tunnel_address", SS_OPT, "tunnel-to", " tunnel-to " },
    { "mode", SS_WARN, "tcp_only or tcp_and_udp", " udp " },
    { "fast_open", SS_WARN, "TCP Fast Open is not used", NULL },
    { "reuse_port", SS_WARN, "ferry always uses SO_REUSEPORT", NULL },
    { "no_delay", SS_WARN, "not supported", NULL },
    { "nofile", SS_WARN, "ferry raises the open-files limit to the hard limit", NULL },
    /* Ignoring it would leave a migrated config started as root running as root. */
    { "user", SS_OPT, "run-as", " run-as " },
    { "mptcp", SS_WARN, "MPTCP is not used", NULL },
    { "workers", SS_WARN, "use --threads", NULL },
    { "plugin", SS_ERROR, "SIP003 plugins are not supported", NULL },
    { "plugin_opts", SS_ERROR, "SIP003 plugins are not supported", NULL },
    { "acl", SS_ERROR, "ACL files are not supported: use --allow-dest/--deny-dest", NULL },
    { "port_password", SS_ERROR, "one port per listener: use a ferry config with several listeners", NULL },
    { "manager_address", SS_ERROR, "ss-manager is not supported", NULL },
    { NULL, 0, NULL, NULL },
};

struct ss_walk {
    struct listener_cfg *l;
    const char *const *given;
};

static int is_given(const struct ss_walk *w, const char *names)
{
    char pat[80];
    for (const char *const *g = w->given; names && g && *g; g++) {
        snprintf(pat, sizeof(pat), " %s ", *g);
        if (strstr(names, pat)) return 1;
    }
    return 0;
}

static const struct ss_key *ss_find(const char *name)
{
    for (const struct ss_key *k = ss_keys; k->json; k++)
        if (strcmp(k->json, name) == 0) return k;
    return NULL;
}

static void apply_named(struct yc *c, struct listener_cfg *l, const char *opt, const yaml_node_t *v,
                        const char *text)
{
    const struct opt_def *o = opt_find_long(opt);
    char why[400];
    if (!o || !(o->modes & l->mode)) return;      /* e.g. tunnel_address for ss-server */
    if (opt_apply(o, c->cfg, l, o->type == OPT_FLAG ? NULL : text, why, sizeof(why)) < 0)
        yc_err(c, v, "%s: %s", opt, why);
}

/* nameserver "1.1.1.1,8.8.8.8" is a list in ss-libev; ipv6_first is a flag. */
static void apply_opt_key(struct yc *c, struct listener_cfg *l, const struct ss_key *k, const yaml_node_t *v)
{
    int on;
    const char *s;
    if (strcmp(k->opt, "prefer-ipv6") == 0) {
        if (yc_bool(c, v, k->json, &on) == 0 && on) apply_named(c, l, k->opt, v, NULL);
        return;
    }
    if (!(s = yc_scalar(c, v, k->json))) return;
    if (strcmp(k->opt, "dns-server") != 0) {
        apply_named(c, l, k->opt, v, s);
        return;
    }
    char *copy = strdup(s), *save = NULL;
    for (char *t = copy ? strtok_r(copy, ", ", &save) : NULL; t; t = strtok_r(NULL, ", ", &save))
        apply_named(c, l, k->opt, v, t);
    free(copy);
}

static void warn_or_refuse(struct yc *c, const struct ss_walk *w, const struct ss_key *k, const yaml_node_t *kn,
                           const yaml_node_t *v)
{
    const char *s = v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : "x";
    if (k->action == SS_ERROR) {
        yc_err(c, kn, "'%s': %s", k->json, k->opt);
    } else if (strcmp(k->json, "mode") == 0) {
        if (strcmp(s, "tcp_and_udp") == 0) {
            if (!is_given(w, k->given)) apply_named(c, w->l, "udp", v, NULL);
        }
        else if (strcmp(s, "udp_only") == 0) yc_err(c, v, "mode: udp_only: ferry relays TCP too: use tcp_and_udp");
        else if (strcmp(s, "tcp_only") != 0) yc_err(c, v, "mode: '%.40s': expected %s", s, k->opt);
    } else if (!yc_is_null(v) && strcmp(s, "false") != 0 && strcmp(s, "0") != 0) {
        yc_warn(c, kn, "'%s' ignored: %s", k->json, k->opt);
    }
}

/* "HOST" + port -> "HOST:PORT", bracketing IPv6 literals as ss-libev writes them bare. */
static void add_addr(struct yc *c, struct listener_cfg *l, const char *opt, const yaml_node_t *at,
                     const char *host, const char *port)
{
    char buf[300];
    /* cppcheck-suppress ctunullpointer ; hosts_with_port passes def == NULL only with hosts */
    if (strchr(host, ':') && host[0] != '[') snprintf(buf, sizeof(buf), "[%s]:%s", host, port);
    else snprintf(buf, sizeof(buf), "%s:%s", host, port);
    apply_named(c, l, opt, at, buf);
}

/* `server` may be one host or a list of them (ss-server listens on each). */
static void hosts_with_port(struct yc *c, struct listener_cfg *l, const char *opt, const yaml_node_t *hosts,
                            const char *def, const yaml_node_t *portn, int one)
{
    const char *port = yc_scalar(c, portn, "port"), *h;
    if (!port) return;
    if (!hosts) {
        add_addr(c, l, opt, portn, def, port);
        return;
    }
    if (hosts->type != YAML_SEQUENCE_NODE) {
        if ((h = yc_scalar(c, hosts, "server"))) add_addr(c, l, opt, hosts, h, port);
        return;
    }
    size_t n = (size_t)(hosts->data.sequence.items.top - hosts->data.sequence.items.start);
    if (one && n != 1) {
        yc_err(c, hosts, "server: ferry ss-local takes one server, not %zu", n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = yc_node(c, hosts->data.sequence.items.start[i]);
        if (item && (h = yc_scalar(c, item, "server"))) add_addr(c, l, opt, item, h, port);
    }
}

static void apply_addresses(struct yc *c, const struct ss_walk *w, const yaml_node_t *root)
{
    struct listener_cfg *l = w->l;
    const yaml_node_t *server = yc_lookup(c, root, "server"), *sport = yc_lookup(c, root, "server_port");
    const yaml_node_t *laddr = yc_lookup(c, root, "local_address"), *lport = yc_lookup(c, root, "local_port");
    int listen_cli = is_given(w, " listen ");
    if (l->mode == MODE_SS_SERVER) {
        if (!listen_cli && sport) hosts_with_port(c, l, "listen", server, "0.0.0.0", sport, 0);
        else if (!listen_cli) yc_err(c, root, "missing 'server_port' (or give -l HOST:PORT)");
        if (laddr || lport) yc_warn(c, laddr ? laddr : lport, "local_address/local_port ignored by ss-server");
        return;
    }
    if (!is_given(w, " server ")) {
        if (server && sport) hosts_with_port(c, l, "server", server, NULL, sport, 1);
        else yc_err(c, root, "missing 'server' and 'server_port' (or give -s HOST:PORT)");
    }
    if (!listen_cli) {
        if (lport) hosts_with_port(c, l, "listen", laddr, "127.0.0.1", lport, 1);
        else yc_err(c, root, "missing 'local_port' (or give -l HOST:PORT)");
    }
}

static void walk_ss(struct yc *c, const yaml_node_t *root, void *arg)
{
    const struct ss_walk *w = arg;
    const char *cands[64];
    size_t n = 0;
    for (const struct ss_key *k = ss_keys; k->json && n < 63; k++) cands[n++] = k->json;
    cands[n] = NULL;
    if (!root || yc_mapping(c, root, "shadowsocks config") < 0) {
        if (!root) yc_err(c, NULL, "empty file: expected a JSON object");
        return;
    }
    for (const yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn, *v;
        const char *key = yc_pair(c, p, &kn, &v);
        const struct ss_key *k = key ? ss_find(key) : NULL;
        if (!key) continue;
        if (!k) yc_unknown_key(c, kn, key, "a shadowsocks-libev config", cands);
        else if (k->action == SS_OPT && !is_given(w, k->given)) apply_opt_key(c, w->l, k, v);
        else if (k->action == SS_WARN || k->action == SS_ERROR) warn_or_refuse(c, w, k, kn, v);
    }
    apply_addresses(c, w, root);
    yc_apply_cli_overrides(c, root);
}

int cfg_load_ss_json_buf(const char *name, const void *buf, size_t len, struct ferry_cfg *g,
                         struct listener_cfg *l, const char *const *given, struct cfg_diag *d)
{
    struct ss_walk w = { l, given };
    return yc_run(name, buf, len, g, d, walk_ss, &w);
}

int cfg_load_ss_json(const char *path, struct ferry_cfg *g, struct listener_cfg *l,
                     const char *const *given, struct cfg_diag *d)
{
    size_t len;
    char *buf = yc_read_file_or_report(path, &len, d);
    if (!buf) return -1;
    int rc = cfg_load_ss_json_buf(path, buf, len, g, l, given, d);
    explicit_bzero(buf, len);      /* it holds the password */
    free(buf);
    return rc;
}

/* Keys only a shadowsocks-libev config has at its top level. */
static void walk_detect(struct yc *c, const yaml_node_t *root, void *arg)
{
    static const char *const ss_only[] = { "server", "server_port", "password", "method", "local_port", "key" };
    int *mode = arg;
    if (!root || root->type != YAML_MAPPING_NODE || yc_lookup(c, root, "listeners")) return;
    for (size_t i = 0; i < sizeof(ss_only) / sizeof(ss_only[0]); i++)
        if (yc_lookup(c, root, ss_only[i]))
            *mode = yc_lookup(c, root, "local_port") ? MODE_SS_LOCAL : MODE_SS_SERVER;
}

int cfg_ss_json_mode(const char *name, const void *buf, size_t len)
{
    struct ferry_cfg scratch;
    struct cfg_diag quiet = { NULL, NULL, 0, 0 };
    int mode = 0;
    memset(&scratch, 0, sizeof(scratch));
    yc_run(name, buf, len, &scratch, &quiet, walk_detect, &mode);
    return mode;
}

static void emit_plain(void *arg, int is_error, const char *line)
{
    (void)arg;
    (void)is_error;
    log_plain("%s", line);
}

int cfg_ss_json_file(const char *path, struct ferry_cfg *cfg, struct listener_cfg *l, const char *const *given,
                     char *err, size_t errlen)
{
    struct cfg_diag d = { emit_plain, NULL, 0, 0 };
    char why[256];
    size_t len;
    /* Unreadable: that one line, with no count of errors after it. */
    char *buf = yc_read_file(path, &len, why, sizeof(why));
    if (!buf) {
        snprintf(err, errlen, "%s: cannot read: %s", path, why);
        return -1;
    }
    int rc = cfg_load_ss_json_buf(path, buf, len, cfg, l, given, &d);
    explicit_bzero(buf, len);      /* it holds the password */
    free(buf);
    if (rc < 0)
        snprintf(err, errlen, "%s: %u error%s in the shadowsocks config", path, d.errors, d.errors == 1 ? "" : "s");
    return rc;
}
