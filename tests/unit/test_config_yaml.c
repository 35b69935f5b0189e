/* test_config_yaml.c - unit tests for the config-file loader (config/yaml*.c,
 * config/ssjson.c, config/check.c).
 *
 * Every load goes through load(), which collects the diagnostic lines; the
 * teardown frees the config (the tests run under ASan too, so a leak on any
 * path is reported). Error cases check the exact "t.yaml:LINE:COL: " prefix
 * and a fragment of the message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/check.h"
#include "config/cli.h"
#include "config/options.h"
#include "config/ssjson.h"
#include "config/yaml.h"
#include "obs/log.h"

#define MAXLINES 200

struct res {
    struct ferry_cfg cfg;
    struct cfg_diag d;
    int rc;
    char *lines[MAXLINES];
    int is_error[MAXLINES];
    size_t n;
    char path[64];             /* temp file, removed at teardown */
};

static void collect(void *arg, int is_error, const char *line)
{
    struct res *r = arg;

    if (r->n < MAXLINES) {
        r->is_error[r->n] = is_error;
        r->lines[r->n++] = strdup(line);
    }
}

static void reset(struct res *r)
{
    cfg_free(&r->cfg);
    for (size_t i = 0; i < r->n; i++)
        free(r->lines[i]);
    memset(&r->cfg, 0, sizeof r->cfg);
    r->n = 0;
    r->d = (struct cfg_diag){ collect, r, 0, 0 };
}

static int setup(void **state)
{
    struct res *r = calloc(1, sizeof *r);

    if (!r)
        return -1;
    reset(r);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    struct res *r = *state;

    reset(r);
    if (r->path[0])
        unlink(r->path);
    free(r);
    return 0;
}

static struct res *load(void **state, const char *text)
{
    struct res *r = *state;

    reset(r);
    r->rc = cfg_load_string("t.yaml", text, strlen(text), &r->cfg, &r->d);
    return r;
}

static void dump(const struct res *r)
{
    for (size_t i = 0; i < r->n; i++)
        print_message("  | %s\n", r->lines[i]);
}

/* The config loaded without error; returns it. */
static struct ferry_cfg *ok(struct res *r)
{
    if (r->rc != 0) {
        dump(r);
        fail_msg("load failed with %u errors", r->d.errors);
    }
    return &r->cfg;
}

/* Some line starts with prefix ("t.yaml:3:5: ") and contains frag. */
static void has(const struct res *r, const char *prefix, const char *frag)
{
    for (size_t i = 0; i < r->n; i++)
        if (strncmp(r->lines[i], prefix, strlen(prefix)) == 0 && strstr(r->lines[i], frag))
            return;
    dump(r);
    fail_msg("no diagnostic '%s...%s'", prefix, frag);
}

static void bad(const struct res *r, const char *prefix, const char *frag)
{
    if (r->rc != -1) {
        dump(r);
        fail_msg("accepted; want error '%s...%s'", prefix, frag);
    }
    has(r, prefix, frag);
}

static unsigned r_warnings(void **state)
{
    return ((struct res *)*state)->d.warnings;
}

static void assert_listen(const struct listener_cfg *l, size_t i, const char *want)
{
    char txt[NET_ADDR_STRLEN];

    assert_true(i < l->nlisten);
    assert_string_equal(net_addr_format(&l->listen[i], txt, sizeof txt), want);
}

static const char *const two_listeners =
    "threads: 2\n"
    "log-level: warn\n"
    "drain-timeout: 3s\n"
    "listeners:\n"
    "  - name: web\n"
    "    mode: relay\n"
    "    listen: 127.0.0.1:8080\n"
    "    upstream: [\"10.0.0.1:80\", \"10.0.0.2:80,weight=3\"]\n"
    "  - name: proxy\n"
    "    mode: socks\n"
    "    listen: 127.0.0.1:1080\n";

/* ---- what loads ---- */

static void test_defaults(void **state)
{
    struct ferry_cfg *c = ok(load(state, two_listeners));
    const struct listener_cfg *web, *px;

    assert_int_equal(c->nlisteners, 2);
    assert_int_equal(c->threads, 2);
    assert_int_equal(c->log_level, LOG_WARN);
    assert_int_equal(c->drain_timeout_ms, 3000);
    web = &c->listeners[0];
    px = &c->listeners[1];
    assert_string_equal(web->name, "web");
    assert_int_equal(web->mode, MODE_RELAY);
    assert_listen(web, 0, "127.0.0.1:8080");
    assert_int_equal(web->nupstreams, 2);
    assert_string_equal(web->upstreams[1].hp.host, "10.0.0.2");
    assert_int_equal(web->upstreams[1].weight, 3);
    assert_int_equal(web->retries, 2);
    assert_null(web->group);
    assert_int_equal(web->connect_timeout_ms, 10000);
    assert_int_equal(web->handshake_timeout_ms, 0);   /* not a relay setting */
    assert_string_equal(px->name, "proxy");
    assert_int_equal(px->mode, MODE_SOCKS);
    assert_int_equal(px->idle_timeout_ms, 300000);
    assert_int_equal(px->handshake_timeout_ms, 10000);
    assert_int_equal(px->backlog, 4096);
    assert_int_equal(px->nusers, 0);
    assert_int_equal(r_warnings(state), 0);
}

static void test_global_defaults(void **state)
{
    struct ferry_cfg *c = ok(load(state, "listeners:\n  - {name: a, mode: socks, listen: \"127.0.0.1:1\"}\n"));

    assert_int_equal(c->threads, 0);
    assert_int_equal(c->log_level, LOG_INFO);
    assert_int_equal(c->drain_timeout_ms, 10000);
}

static void test_repeatable(void **state)
{
    struct ferry_cfg *c = ok(load(state,
        "listeners:\n"
        "  - name: p\n"
        "    mode: socks\n"
        "    listen: [127.0.0.1:1080, \"[::1]:1080\"]\n"
        "    user: [alice:a1, \"bob:b:2\"]\n"
        "    allow: [10.0.0.0/8, 127.0.0.1]\n"
        "    deny: 192.168.0.0/16\n"
        "    dns-server: [127.0.0.53, \"::1\"]\n"
        "    allow-anonymous: true\n"
        "    no-splice: false\n"));
    const struct listener_cfg *l = &c->listeners[0];

    assert_int_equal(l->nlisten, 2);
    assert_listen(l, 1, "[::1]:1080");
    assert_int_equal(l->nusers, 2);
    assert_string_equal(l->users[1].name, "bob");
    assert_string_equal(l->users[1].pass, "b:2");
    assert_int_equal(l->client_acl.n, 3);
    assert_string_equal(l->dns_servers, "127.0.0.53:53,[::1]:53");
    assert_int_equal(l->allow_anonymous, 1);
    assert_int_equal(l->no_splice, 0);
}

static const char *const shared =
    "upstreams:\n"
    "  web:\n"
    "    retries: 1\n"
    "    servers:\n"
    "      - 10.0.0.1:80\n"
    "      - {address: \"10.0.0.2:80\", weight: 5}\n"
    "  api: [\"10.1.0.1:443\"]\n"
    "listeners:\n"
    "  - {name: a, mode: relay, listen: \"127.0.0.1:81\", upstream: web}\n"
    "  - {name: b, mode: relay, listen: \"127.0.0.1:82\", upstream: web, retries: 0}\n"
    "  - {name: c, mode: relay, listen: \"127.0.0.1:83\", upstream: api}\n";

static void test_shared_groups(void **state)
{
    struct ferry_cfg *c = ok(load(state, shared));
    const struct listener_cfg *a = &c->listeners[0], *b = &c->listeners[1], *cc = &c->listeners[2];

    assert_int_equal(c->ngroups, 2);
    assert_string_equal(c->groups[0].name, "web");
    assert_int_equal(c->groups[0].nservers, 2);
    assert_ptr_equal(a->group, &c->groups[0]);
    assert_ptr_equal(b->group, &c->groups[0]);
    assert_ptr_equal(cc->group, &c->groups[1]);
    assert_int_equal(a->nupstreams, 2);
    assert_int_equal(b->nupstreams, 2);
    assert_int_equal(a->upstreams[1].weight, 5);
    assert_string_equal(b->upstreams[1].hp.host, "10.0.0.2");
    assert_int_equal(a->retries, 1);          /* from the group */
    assert_int_equal(b->retries, 0);          /* the listener's own wins */
    assert_int_equal(cc->retries, 2);         /* the table default */
    assert_int_equal(cc->upstreams[0].hp.port, 443);
}

/* Group balancing keys reach the listener: balance through the option
 * table, backup servers kept (flagged), maxconn per server, health checks
 * through the group; no warnings now that the engine enforces them. */
static void test_balancer_keys_applied(void **state)
{
    struct res *r = load(state,
        "upstreams:\n"
        "  web:\n"
        "    balance: leastconn\n"
        "    health-check: {interval: 5s, rise: 3, send: \"PING\\r\\n\", expect: \"+PONG\"}\n"
        "    servers:\n"
        "      - {address: \"10.0.0.1:80\", maxconn: 100}\n"
        "      - {address: \"10.0.0.2:80\", backup: true}\n"
        "  unused: [\"10.9.9.9:1\"]\n"
        "listeners:\n"
        "  - {name: a, mode: relay, listen: \"127.0.0.1:81\", upstream: web}\n");
    const struct upstream_group_cfg *g;
    const struct listener_cfg *l;

    ok(r);
    g = &r->cfg.groups[0];
    l = &r->cfg.listeners[0];
    assert_int_equal(g->balance, 1);
    assert_int_equal(g->health.interval_ms, 5000);
    assert_int_equal(g->health.rise, 3);
    assert_int_equal(g->health.fall, 3);     /* default */
    assert_string_equal(g->health.send, "PING\r\n");
    assert_string_equal(g->health.expect, "+PONG");
    assert_int_equal(l->balance, 1);         /* leastconn, applied through --balance */
    assert_ptr_equal(cfg_effective_health(l), &g->health);
    assert_int_equal(l->nupstreams, 2);
    assert_int_equal(l->upstreams[0].maxconn, 100);
    assert_int_equal(l->upstreams[1].backup, 1);
    for (size_t i = 0; i < r->n; i++) assert_null(strstr(r->lines[i], "not yet enforced"));
    has(r, "t.yaml:8:3: warning: ", "group 'unused' is not used");
}

static void test_inline_server_mapping(void **state)
{
    struct ferry_cfg *c = ok(load(state,
        "listeners:\n"
        "  - name: a\n"
        "    mode: relay\n"
        "    listen: 127.0.0.1:81\n"
        "    upstream:\n"
        "      - {address: \"[::1]:80\", weight: 2}\n"
        "      - example.com:443\n"));

    assert_int_equal(c->listeners[0].nupstreams, 2);
    assert_string_equal(c->listeners[0].upstreams[0].hp.host, "::1");
    assert_int_equal(c->listeners[0].upstreams[0].weight, 2);
    assert_string_equal(c->listeners[0].upstreams[1].hp.host, "example.com");
}

static void test_aliases_share_settings(void **state)
{
    struct ferry_cfg *c = ok(load(state,
        "listeners:\n"
        "  - {name: a, mode: socks, listen: \"127.0.0.1:1\", allow: &lan [10.0.0.0/8, 127.0.0.0/8]}\n"
        "  - {name: b, mode: socks, listen: \"127.0.0.1:2\", allow: *lan}\n"));

    assert_int_equal(c->listeners[1].client_acl.n, 2);
}

static void test_json_config(void **state)
{
    struct ferry_cfg *c = ok(load(state,
        "{\"threads\": 1, \"listeners\": [{\"name\": \"j\", \"mode\": \"relay\", "
        "\"listen\": \"127.0.0.1:9\", \"upstream\": [\"127.0.0.1:10\"], \"maxconn\": 7}]}"));

    assert_int_equal(c->threads, 1);
    assert_int_equal(c->listeners[0].maxconn, 7);
}

/* ---- errors, each with its position ---- */

static void test_err_unknown_keys(void **state)
{
    struct res *r = load(state,
        "treads: 2\n"
        "listeners:\n"
        "  - name: a\n"
        "    mode: socks\n"
        "    listen: 127.0.0.1:1\n"
        "    conect-timeout: 5s\n"
        "    bogus: 1\n");

    bad(r, "t.yaml:1:1: ", "unknown key 'treads' in the top level (did you mean 'threads'?)");
    bad(r, "t.yaml:6:5: ", "unknown key 'conect-timeout' in a listener (did you mean 'connect-timeout'?)");
    bad(r, "t.yaml:7:5: ", "unknown key 'bogus' in a listener");
    assert_int_equal(r->d.errors, 3);
}

static void test_err_types(void **state)
{
    struct res *r = load(state,
        "threads: [1, 2]\n"
        "log-level: {a: b}\n"
        "listeners:\n"
        "  - name: a\n"
        "    mode: socks\n"
        "    listen: 127.0.0.1:1\n"
        "    connect-timeout:\n"
        "    no-splice: yes\n"
        "    allow: [[10.0.0.0/8]]\n"
        "    idle-timeout: \"ab\\0c\"\n");

    bad(r, "t.yaml:1:10: ", "threads: takes one value, not a list");
    bad(r, "t.yaml:2:12: ", "log-level: expected a value, got a mapping");
    bad(r, "t.yaml:7:21: ", "connect-timeout: expected a value, got nothing");
    bad(r, "t.yaml:8:16: ", "no-splice: 'yes': expected true or false");
    bad(r, "t.yaml:9:13: ", "allow: expected a value, got a list");
    bad(r, "t.yaml:10:19: ", "idle-timeout: NUL byte in value");
}

static void test_err_addresses(void **state)
{
    struct res *r = load(state,
        "listeners:\n"
        "  - name: a\n"
        "    mode: relay\n"
        "    listen: [127.0.0.1:1, 300.0.0.1:2, example.com:3]\n"
        "    upstream: [\"10.0.0.1\", \"10.0.0.2:99999\", \"::1:80\"]\n");

    bad(r, "t.yaml:4:27: ", "'300.0.0.1:2'");
    bad(r, "t.yaml:4:40: ", "'example.com:3': host must be an IP address or localhost");
    bad(r, "t.yaml:5:16: ", "server: '10.0.0.1': expected HOST:PORT");
    bad(r, "t.yaml:5:28: ", "bad port");
    bad(r, "t.yaml:5:46: ", "brackets");
}

static void test_err_ranges(void **state)
{
    struct res *r = load(state,
        "threads: 257\n"
        "drain-timeout: 2h\n"
        "upstreams:\n"
        "  g:\n"
        "    retries: 17\n"
        "    health-check: {interval: 10ms, fall: 101}\n"
        "    servers: [{address: \"10.0.0.1:80\", weight: 1001, maxconn: -1}]\n"
        "listeners:\n"
        "  - {name: a, mode: relay, listen: \"127.0.0.1:1\", upstream: g, backlog: 0}\n");

    bad(r, "t.yaml:1:10: ", "threads: '257': expected a whole number from 0 to 256");
    bad(r, "t.yaml:2:16: ", "drain-timeout: '2h': out of range");
    bad(r, "t.yaml:5:14: ", "retries: '17': expected a whole number from 0 to 16");
    bad(r, "t.yaml:6:30: ", "interval: '10ms': expected a duration from 100ms");
    bad(r, "t.yaml:6:42: ", "fall: '101'");
    bad(r, "t.yaml:7:48: ", "weight: '1001'");
    bad(r, "t.yaml:7:63: ", "maxconn: '-1'");
    bad(r, "t.yaml:9:73: ", "backlog: '0'");
}

static void test_err_duplicates(void **state)
{
    struct res *r = load(state,
        "upstreams:\n"
        "  g: [\"10.0.0.1:80\"]\n"
        "  g: [\"10.0.0.2:80\"]\n"
        "listeners:\n"
        "  - name: a\n"
        "    mode: relay\n"
        "    listen: 127.0.0.1:1\n"
        "    upstream: [\"10.0.0.1:80\", \"10.0.0.1:80\"]\n"
        "    maxconn: 1\n"
        "    maxconn: 2\n"
        "  - {name: a, mode: socks, listen: \"127.0.0.1:1\"}\n"
        "  - {name: b, mode: socks, listen: [\"127.0.0.1:2\", \"127.0.0.1:2\"]}\n");

    bad(r, "t.yaml:3:3: ", "duplicate key 'g' (first at line 2)");
    bad(r, "t.yaml:8:31: ", "server '10.0.0.1:80' is listed twice");
    bad(r, "t.yaml:10:5: ", "duplicate key 'maxconn' (first at line 9)");
    bad(r, "t.yaml:11:12: ", "name: listener 'a' is already defined (line 5)");
    bad(r, "t.yaml:11:36: ", "listen: 127.0.0.1:1 is also used by listener 'a'");
    bad(r, "t.yaml:12:52: ", "listen: 127.0.0.1:2 is listed twice");   /* at the second one */
}

static void test_err_groups(void **state)
{
    struct res *r = load(state,
        "upstreams:\n"
        "  web: [\"10.0.0.1:80\"]\n"
        "  empty: {balance: roundrobin}\n"
        "  bk: [{address: \"10.0.0.1:80\", backup: true}]\n"
        "  \"bad name\": [\"10.0.0.1:80\"]\n"
        "  odd: {servers: [\"10.0.0.1:80\"], balanse: source}\n"
        "listeners:\n"
        "  - {name: a, mode: relay, listen: \"127.0.0.1:1\", upstream: wbe}\n"
        "  - {name: b, mode: relay, listen: \"127.0.0.1:2\", upstream: nope}\n"
        "  - {name: c, mode: relay, listen: \"127.0.0.1:3\", upstream: {servers: []}}\n"
        "  - {name: d, mode: relay, listen: \"127.0.0.1:4\"}\n"
        "  - {name: e, mode: socks, listen: \"127.0.0.1:5\", upstream: web}\n");

    bad(r, "t.yaml:3:10: ", "upstream group 'empty': missing 'servers:'");
    bad(r, "t.yaml:4:7: ", "upstream group 'bk': only backup servers");
    bad(r, "t.yaml:5:3: ", "upstream group name 'bad name'");
    bad(r, "t.yaml:6:35: ", "unknown key 'balanse' in an upstream group (did you mean 'balance'?)");
    bad(r, "t.yaml:8:61: ", "unknown group 'wbe' (did you mean 'web'?)");
    bad(r, "t.yaml:9:61: ", "unknown group 'nope'");
    bad(r, "t.yaml:10:61: ", "define groups under 'upstreams:'");
    bad(r, "t.yaml:11:5: ", "listener 'd': a relay needs 'upstream:'");
    bad(r, "t.yaml:12:51: ", "'upstream' does not apply to socks listeners");
}

static void test_err_listener_shape(void **state)
{
    struct res *r = load(state,
        "listeners:\n"
        "  - {mode: socks, listen: \"127.0.0.1:1\"}\n"
        "  - {name: b, listen: \"127.0.0.1:2\"}\n"
        "  - {name: c, mode: tunnel}\n"
        "  - {name: d, mode: socks}\n"
        "  - {name: \"e f\", mode: socks, listen: \"127.0.0.1:3\"}\n"
        "  - just text\n"
        "  - {name: g, mode: socks, listen: \"127.0.0.1:4\", threads: 2}\n"
        "connect-timeout: 5s\n");

    bad(r, "t.yaml:2:5: ", "listener #1: missing 'name'");
    bad(r, "t.yaml:3:5: ", "listener 'b': missing 'mode' (socks, relay");
    bad(r, "t.yaml:4:21: ", "mode: 'tunnel': expected one of socks, relay");
    bad(r, "t.yaml:5:5: ", "listener 'd': missing 'listen: HOST:PORT'");
    bad(r, "t.yaml:6:12: ", "name: 'e f': use 1-31 letters");
    bad(r, "t.yaml:7:5: ", "listener: expected a mapping (key: value), got text");
    bad(r, "t.yaml:8:51: ", "'threads' is a global option: set it at the top level");
    bad(r, "t.yaml:9:1: ", "'connect-timeout' is a listener option");
}

static void test_err_option_not_for_mode(void **state)
{
    struct res *r = load(state,
        "listeners:\n"
        "  - name: r\n"
        "    mode: relay\n"
        "    listen: 127.0.0.1:1\n"
        "    upstream: [\"10.0.0.1:80\"]\n"
        "    user: a:b\n"
        "    handshake-timeout: 1s\n");

    bad(r, "t.yaml:6:5: ", "'user' does not apply to relay listeners");
    bad(r, "t.yaml:7:5: ", "'handshake-timeout' does not apply to relay listeners");
}

/* The command line's final check runs on config listeners too. */
static void test_err_finish_check(void **state)
{
    struct res *r = load(state, "listeners:\n  - {name: open, mode: socks, listen: \"0.0.0.0:1080\"}\n");

    bad(r, "t.yaml:2:5: ", "listener 'open': refusing to run an open SOCKS proxy");
}

static void test_err_document(void **state)
{
    struct res *r = load(state, "");

    bad(r, "t.yaml:1:1: ", "empty config");
    r = load(state, "listeners: [\n  {name: a,\n");
    bad(r, "t.yaml:3:1: ", "YAML syntax: ");
    r = load(state, "- a\n- b\n");
    bad(r, "t.yaml:1:1: ", "the config file: expected a mapping (key: value), got a list");
    r = load(state, "listeners: []\n");
    bad(r, "t.yaml:1:12: ", "listeners: empty list");
    r = load(state, "listeners: {a: 1}\n");
    bad(r, "t.yaml:1:12: ", "listeners: expected a list");
    r = load(state, "threads: 1\n");
    bad(r, "t.yaml:1:1: ", "no 'listeners:'");
    r = load(state, "listeners:\n  - {name: a, mode: socks, listen: \"127.0.0.1:1\"}\n---\nthreads: 2\n");
    bad(r, "t.yaml:4:1: ", "more than one YAML document");
    r = load(state, "listeners:\n  - {name: a, mode: socks, listen: \"127.0.0.1:1\"}\n---\n[\n");
    bad(r, "t.yaml:5:1: ", "YAML syntax: ");
    r = load(state, "? [a]\n: 1\nlisteners: []\n");
    bad(r, "t.yaml:1:3: ", "keys must be plain text");
}

static void test_errors_sorted_and_all_reported(void **state)
{
    struct res *r = load(state,
        "listeners:\n"
        "  - {name: a, mode: socks, listen: \"127.0.0.1:1\", maxconn: x}\n"
        "threads: x\n"
        "upstreams: {g: [\"x\"]}\n");

    assert_int_equal(r->rc, -1);
    assert_int_equal(r->d.errors, 3);        /* maxconn, threads, server */
    assert_int_equal(r->d.warnings, 0);      /* g has no server left: not warned about as unused */
    for (size_t i = 1; i < r->n; i++) {
        unsigned long l0 = strtoul(strchr(r->lines[i - 1], ':') + 1, NULL, 10);
        unsigned long l1 = strtoul(strchr(r->lines[i], ':') + 1, NULL, 10);
        assert_true(l0 <= l1);
    }
}

static void test_alias_bomb_is_bounded(void **state)
{
    char text[4096];
    int n = snprintf(text, sizeof text, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");

    for (int i = 1; i < 9; i++)
        n += snprintf(text + n, sizeof text - (size_t)n, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, "
                      "*a%d, *a%d, *a%d, *a%d]\n", i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1,
                      i - 1, i - 1, i - 1);
    snprintf(text + n, sizeof text - (size_t)n, "listeners:\n  - {name: a, mode: socks, listen: "
             "\"127.0.0.1:1\", allow: *a8}\n");
    struct res *r = load(state, text);
    assert_int_equal(r->rc, -1);             /* unknown keys a0..a8, and a list of lists */
}

static void test_too_many_errors_capped(void **state)
{
    size_t cap = 300 * 16 + 64, n;
    char *text = malloc(cap);

    assert_non_null(text);
    n = (size_t)snprintf(text, cap, "listeners: []\n");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(text + n, cap - n, "bad%03d: 1\n", i);
    struct res *r = load(state, text);
    free(text);
    assert_int_equal(r->d.errors, 301);
    assert_true(r->n <= 102);
    has(r, "t.yaml: too many errors", "");
}

/* ---- shadowsocks-libev JSON ---- */

static void write_file(struct res *r, const char *text)
{
    int fd;

    snprintf(r->path, sizeof r->path, "/tmp/ferry-test-ss-XXXXXX");
    fd = mkstemp(r->path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static struct listener_cfg *ss_listener(struct res *r, int mode)
{
    char err[200];

    reset(r);
    r->cfg.listeners = calloc(1, sizeof *r->cfg.listeners);
    assert_non_null(r->cfg.listeners);
    r->cfg.nlisteners = 1;
    r->cfg.listeners[0].mode = mode;
    snprintf(r->cfg.listeners[0].name, sizeof r->cfg.listeners[0].name, "%s", opt_mode_name(mode));
    assert_int_equal(opt_defaults(&r->cfg, &r->cfg.listeners[0], err, sizeof err), 0);
    return &r->cfg.listeners[0];
}

static void test_ss_json_server(void **state)
{
    struct res *r = *state;
    struct listener_cfg *l;
    char err[200];

    write_file(r, "{\"server\": [\"::\", \"127.0.0.1\"], \"server_port\": 8388, \"password\": \"pw\",\n"
                  " \"method\": \"aes-256-gcm\", \"timeout\": 60, \"fast_open\": true, \"mode\": \"tcp_only\"}\n");
    l = ss_listener(r, MODE_SS_SERVER);
    assert_int_equal(cfg_load_ss_json(r->path, &r->cfg, l, NULL, &r->d), 0);
    assert_int_equal(l->nlisten, 2);
    assert_listen(l, 0, "[::]:8388");
    assert_listen(l, 1, "127.0.0.1:8388");
    assert_string_equal(l->ss_method, "aes-256-gcm");
    assert_int_equal(l->idle_timeout_ms, 60000);
    assert_int_equal(r->d.warnings, 1);      /* fast_open */
    has(r, r->path, "'fast_open' ignored");
    assert_int_equal(cfg_listener_finish(l, err, sizeof err), 0);
}

static void test_ss_json_local_cli_wins(void **state)
{
    static const char *const given[] = { "listen", "password", NULL };
    struct res *r = *state;
    struct listener_cfg *l;

    write_file(r, "{\"server\": \"192.0.2.1\", \"server_port\": 8388, \"local_address\": \"127.0.0.1\",\n"
                  " \"local_port\": 1080, \"password\": \"pw\", \"nameserver\": \"127.0.0.53,127.0.0.54\"}\n");
    l = ss_listener(r, MODE_SS_LOCAL);
    assert_int_equal(cfg_load_ss_json(r->path, &r->cfg, l, given, &r->d), 0);
    assert_int_equal(l->nlisten, 0);         /* -l given: local_* skipped */
    assert_null(l->ss_password);             /* -k given */
    assert_string_equal(l->ss_server.host, "192.0.2.1");
    assert_int_equal(l->ss_server.port, 8388);
    assert_string_equal(l->dns_servers, "127.0.0.53:53,127.0.0.54:53");
}

/* A migrated config started as root must not keep running as root. */
static void test_ss_json_user_is_run_as(void **state)
{
    static const char *const given[] = { "run-as", NULL };
    struct res *r = *state;
    struct listener_cfg *l;

    write_file(r, "{\"server_port\": 8388, \"password\": \"pw\", \"user\": \"nobody\"}\n");
    l = ss_listener(r, MODE_SS_SERVER);
    assert_int_equal(cfg_load_ss_json(r->path, &r->cfg, l, NULL, &r->d), 0);
    assert_string_equal(r->cfg.run_as, "nobody");
    assert_int_equal(r->d.warnings, 0);
    /* --run-as on the command line wins */
    l = ss_listener(r, MODE_SS_SERVER);
    assert_int_equal(cfg_load_ss_json(r->path, &r->cfg, l, given, &r->d), 0);
    assert_string_equal(r->cfg.run_as, "");
}

static void test_ss_json_errors(void **state)
{
    struct res *r = *state;
    struct listener_cfg *l;

    write_file(r, "{\"server\": \"0.0.0.0\",\n \"plugin\": \"obfs-local\",\n \"passwd\": \"x\",\n"
                  " \"method\": \"rc4-md5\", \"server_port\": 8388}\n");
    l = ss_listener(r, MODE_SS_SERVER);
    assert_int_equal(cfg_load_ss_json(r->path, &r->cfg, l, NULL, &r->d), -1);
    has(r, r->path, ":2:2: 'plugin': SIP003 plugins are not supported");
    has(r, r->path, ":3:2: unknown key 'passwd' in a shadowsocks-libev config (did you mean 'password'?)");
    has(r, r->path, ":4:12: method: 'rc4-md5': unknown method");
}

/* ---- the reference ---- */

static void test_dump_lists_every_option(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    (void)state;
    assert_non_null(f);
    cfg_dump_options(f);
    fclose(f);
    for (const struct opt_def *o = opt_table; o->name; o++) {
        char want[80];

        snprintf(want, sizeof want, "| `%s` | `--%s`", o->name, o->name);
        if (!strstr(buf, want))
            fail_msg("--dump-options does not list '%s'", o->name);
    }
    assert_non_null(strstr(buf, "| `health-check` |"));
    assert_non_null(strstr(buf, "| `backup` |"));
    free(buf);
}

/* rewrite: a list of --rewrite specs; a bad one is reported at its line
 * and column, with the column inside the spec. */
#define RELAY_P "listeners:\n  - name: p\n    mode: relay\n    listen: 127.0.0.1:1080\n    upstream: 127.0.0.1:80\n"

static void test_rewrite(void **state)
{
    struct ferry_cfg *c = ok(load(state, RELAY_P
        "    rewrite:\n"
        "      - 'upstream:Host\\: a:Host\\: b'\n"
        "      - 'downstream:hex:0d0a:'\n"));
    const struct listener_cfg *l = &c->listeners[0];
    assert_int_equal(l->rewrite.n, 2);
    assert_memory_equal(l->rewrite.rules[0].match, "Host: a", 7);
    assert_int_equal(l->rewrite.rules[1].match_len, 2);
    bad(load(state, RELAY_P
        "    rewrite:\n"
        "      - upstream:a:b\n"
        "      - 'both:hex:0:b'\n"),
        "t.yaml:8:9: ", "rewrite: column 10: match: odd number of hex digits");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_global_defaults),
        T(test_repeatable),
        T(test_rewrite),
        T(test_shared_groups),
        T(test_balancer_keys_applied),
        T(test_inline_server_mapping),
        T(test_aliases_share_settings),
        T(test_json_config),
        T(test_err_unknown_keys),
        T(test_err_types),
        T(test_err_addresses),
        T(test_err_ranges),
        T(test_err_duplicates),
        T(test_err_groups),
        T(test_err_listener_shape),
        T(test_err_option_not_for_mode),
        T(test_err_finish_check),
        T(test_err_document),
        T(test_errors_sorted_and_all_reported),
        T(test_alias_bomb_is_bounded),
        T(test_too_many_errors_capped),
        T(test_ss_json_server),
        T(test_ss_json_local_cli_wins),
        T(test_ss_json_user_is_run_as),
        T(test_ss_json_errors),
        T(test_dump_lists_every_option),
    };

    log_set_level(LOG_QUIET);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
