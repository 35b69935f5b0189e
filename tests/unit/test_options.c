/* test_options.c - unit tests for config/options and config/cli.
 *
 * Every cli_parse() goes through parse(), which zeroes the config first and
 * leaves cfg_free() to the caller's teardown (the tests run under ASan, so a
 * leak on any success or error path is reported). Error messages are checked
 * for the flag or value they must name. Tests named test_regression_* fail until
 * the bug they describe is fixed in src/config/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/cli.h"
#include "config/options.h"
#include "policy/acl.h"
#include "obs/log.h"

#define MAXARGS 40

struct run {
    struct ferry_cfg cfg;
    enum cli_action action;
    int help_mode;
    int rc;
    char err[512];
    char path[64];            /* temp users file, removed at teardown */
    char args[MAXARGS + 2][1100];   /* writable argv, as main() gets: ferry blanks secrets in it */
};

static int setup(void **state)
{
    struct run *r = calloc(1, sizeof *r);

    if (!r)
        return -1;
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    struct run *r = *state;

    cfg_free(&r->cfg);
    if (r->path[0])
        unlink(r->path);
    free(r);
    return 0;
}

/* cli_parse on "ferry" followed by the NULL-terminated arguments. */
static struct run *parse(void **state, ...)
{
    struct run *r = *state;
    char *argv[MAXARGS + 2];
    int argc = 0;
    va_list ap;
    const char *a;

    cfg_free(&r->cfg);                      /* a test may parse twice */
    memset(&r->cfg, 0, sizeof r->cfg);
    argv[argc++] = (char *)"ferry";
    va_start(ap, state);
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(argc <= MAXARGS);
        assert_true(strlen(a) < sizeof r->args[0]);
        argv[argc] = strcpy(r->args[argc], a);
        argc++;
    }
    va_end(ap);
    argv[argc] = NULL;
    r->err[0] = '\0';
    r->rc = cli_parse(argc, argv, &r->cfg, &r->action, &r->help_mode, r->err, sizeof r->err);
    return r;
}

static struct listener_cfg *ok(struct run *r)
{
    if (r->rc != 0)
        fail_msg("cli_parse failed: %s", r->err);
    assert_int_equal(r->action, CLI_RUN);
    assert_int_equal(r->cfg.nlisteners, 1);
    return &r->cfg.listeners[0];
}

/* Fails unless parsing failed with a message containing each fragment. */
static void bad(struct run *r, const char *frag1, const char *frag2)
{
    if (r->rc != -1)
        fail_msg("cli_parse accepted what it should reject (want error with '%s')", frag1);
    if (!strstr(r->err, frag1) || (frag2 && !strstr(r->err, frag2)))
        fail_msg("error '%s' does not name '%s'%s%s", r->err, frag1, frag2 ? " / " : "",
                 frag2 ? frag2 : "");
}

static void assert_listen(const struct listener_cfg *l, size_t i, const char *want)
{
    char txt[NET_ADDR_STRLEN];

    assert_true(i < l->nlisten);
    assert_string_equal(net_addr_format(&l->listen[i], txt, sizeof txt), want);
}

static unsigned r_threads(void **state)
{
    return ((struct run *)*state)->cfg.threads;
}

/* ---- durations ---- */

static void expect_duration(const char *s, unsigned want)
{
    unsigned ms = 0xDEADBEEF;

    if (opt_parse_duration(s, &ms) != 0)
        fail_msg("duration '%s' rejected", s);
    assert_int_equal(ms, want);
}

static void expect_duration_bad(const char *s)
{
    unsigned ms = 0xDEADBEEF;

    if (opt_parse_duration(s, &ms) != -1)
        fail_msg("duration '%s' accepted as %u ms", s, ms);
    assert_int_equal(ms, 0xDEADBEEF);
}

static void test_duration(void **state)
{
    (void)state;
    expect_duration("250ms", 250);
    expect_duration("10s", 10000);
    expect_duration("5m", 300000);
    expect_duration("1h", 3600000);
    expect_duration("7", 7000);                  /* bare number: seconds */
    expect_duration("0", 0);
    expect_duration("0ms", 0);
    expect_duration("1.5s", 1500);
    expect_duration("4000000s", 4000000000u);    /* the largest accepted */
}

static void test_duration_bad(void **state)
{
    static const char *const v[] = {
        "", "s", "ms", "-1", "-1s", "+1s", " 1s", "1s ", "1 s", "10x", "10S", "10sec", "1e99",
        "1e400", "4000001s", "nan", "inf", "1h1m", "1..5s", ".5s",
    };

    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        expect_duration_bad(v[i]);
}

/* ---- defaults ---- */

static void test_defaults_socks(void **state)
{
    struct run *r = parse(state, NULL);
    struct listener_cfg *l = ok(r);

    assert_int_equal(r->help_mode, 0);
    assert_int_equal(l->mode, MODE_SOCKS);
    assert_string_equal(l->name, "socks");
    assert_int_equal(l->nlisten, 1);
    assert_listen(l, 0, "127.0.0.1:1080");
    assert_int_equal(l->connect_timeout_ms, 10000);
    assert_int_equal(l->idle_timeout_ms, 300000);
    assert_int_equal(l->handshake_timeout_ms, 10000);
    assert_int_equal(l->resolve_timeout_ms, 5000);
    assert_int_equal(l->backlog, 4096);
    assert_int_equal(l->maxconn, 0);
    assert_int_equal(l->retries, 0);             /* a relay setting */
    assert_int_equal(l->nusers, 0);
    assert_int_equal(l->nupstreams, 0);
    assert_int_equal(l->client_acl.n, 0);
    assert_int_equal(l->dest_acl.n, 0);
    assert_int_equal(l->no_splice, 0);
    assert_int_equal(l->allow_anonymous, 0);
    assert_string_equal(l->dns_servers, "");
    assert_int_equal(r->cfg.drain_timeout_ms, 10000);
    assert_int_equal(r->cfg.threads, 0);
    assert_int_equal(r->cfg.log_level, LOG_INFO);
}

static void test_explicit_socks_subcommand(void **state)
{
    struct run *r = parse(state, "socks", NULL);
    struct listener_cfg *l = ok(r);

    assert_int_equal(r->help_mode, MODE_SOCKS);
    assert_int_equal(l->mode, MODE_SOCKS);
    assert_listen(l, 0, "127.0.0.1:1080");
}

/* The relay defaults; handshake-timeout is a SOCKS setting. */
static void test_defaults_relay(void **state)
{
    struct run *r = parse(state, "relay", "-l", ":9000", "-u", "backend:80", NULL);
    struct listener_cfg *l = ok(r);

    assert_int_equal(r->help_mode, MODE_RELAY);
    assert_int_equal(l->mode, MODE_RELAY);
    assert_string_equal(l->name, "relay");
    assert_listen(l, 0, "0.0.0.0:9000");
    assert_int_equal(l->nupstreams, 1);
    assert_string_equal(l->upstreams[0].hp.host, "backend");
    assert_int_equal(l->upstreams[0].hp.port, 80);
    assert_int_equal(l->upstreams[0].weight, 1);
    assert_int_equal(l->connect_timeout_ms, 10000);
    assert_int_equal(l->idle_timeout_ms, 300000);
    assert_int_equal(l->resolve_timeout_ms, 5000);
    assert_int_equal(l->handshake_timeout_ms, 0);
    assert_int_equal(l->retries, 2);
    assert_int_equal(r->cfg.drain_timeout_ms, 10000);
}

static void test_relay_needs_upstream_and_listen(void **state)
{
    bad(parse(state, "relay", "-l", ":9000", NULL), "upstream", "-u");
    bad(parse(state, "relay", "-u", "a:1", NULL), "listen", "-l");
    bad(parse(state, "relay", NULL), "listen", NULL);
}

/* ---- option syntax ---- */

static void test_value_forms(void **state)
{
    struct listener_cfg *l;

    l = ok(parse(state, "--connect-timeout=250ms", "--idle-timeout", "1h",
                 "--listen=[::1]:1081", "-l", "127.0.0.2:1082", "--listen", ":1083", "--open", NULL));
    assert_int_equal(l->connect_timeout_ms, 250);
    assert_int_equal(l->idle_timeout_ms, 3600000);
    assert_int_equal(l->nlisten, 3);
    assert_listen(l, 0, "[::1]:1081");
    assert_listen(l, 1, "127.0.0.2:1082");
    assert_listen(l, 2, "0.0.0.0:1083");

    /* A value may itself start with '-' or contain '='. */
    l = ok(parse(state, "--user", "-n=x:p=w", NULL));
    assert_int_equal(l->nusers, 1);
    assert_string_equal(l->users[0].name, "-n=x");
    assert_string_equal(l->users[0].pass, "p=w");

    l = ok(parse(state, "--no-splice", "--prefer-ipv6", "--allow-anonymous", "--allow-socks4",
                 "--threads", "4", "--maxconn=100", "--backlog", "1", "--log-level", "debug",
                 "--drain-timeout", "0", "--handshake-timeout", "2s", "--resolve-timeout", "100ms",
                 NULL));
    assert_int_equal(l->no_splice, 1);
    assert_int_equal(l->prefer_ipv6, 1);
    assert_int_equal(l->allow_anonymous, 1);
    assert_int_equal(l->allow_socks4, 1);
    assert_int_equal(r_threads(state), 4);
    assert_int_equal(l->maxconn, 100);
    assert_int_equal(l->backlog, 1);
    assert_int_equal(l->handshake_timeout_ms, 2000);
    assert_int_equal(l->resolve_timeout_ms, 100);
}

static void test_unknown_option(void **state)
{
    bad(parse(state, "--bogus", NULL), "'--bogus'", NULL);
    bad(parse(state, "--bogus=Secret1", NULL), "'--bogus'", NULL);   /* values are never echoed */
    assert_null(strstr(((struct run *)*state)->err, "Secret1"));
    bad(parse(state, "-x", "1", NULL), "'-x'", NULL);
    bad(parse(state, "-xSecret2", NULL), "'-x'", NULL);
    assert_null(strstr(((struct run *)*state)->err, "Secret2"));
    bad(parse(state, "-lx", NULL), "--listen", "'x'");             /* -lVALUE is -l VALUE */
    bad(parse(state, "-", NULL), "'-'", NULL);
    bad(parse(state, "--", NULL), "'--'", NULL);
    bad(parse(state, "---listen", ":1", NULL), "'---listen'", NULL);
    bad(parse(state, "--LISTEN", ":1", NULL), "'--LISTEN'", NULL);
}

static void test_option_needs_value(void **state)
{
    bad(parse(state, "--connect-timeout", NULL), "--connect-timeout", "needs a value");
    bad(parse(state, "-l", NULL), "-l", "ADDR");
    bad(parse(state, "--no-splice=1", NULL), "--no-splice", "takes no value");
}

static void test_bad_values_name_the_flag(void **state)
{
    bad(parse(state, "--connect-timeout", "10x", NULL), "--connect-timeout", "10x");
    bad(parse(state, "--connect-timeout", "0", NULL), "--connect-timeout", "out of range");
    bad(parse(state, "--connect-timeout", "2h", NULL), "--connect-timeout", "2h");
    bad(parse(state, "--threads", "257", NULL), "--threads", "257");
    bad(parse(state, "--threads", "-1", NULL), "--threads", "-1");
    bad(parse(state, "--threads", "", NULL), "--threads", NULL);
    bad(parse(state, "--threads", "4x", NULL), "--threads", "4x");
    bad(parse(state, "--backlog", "0", NULL), "--backlog", "0");
    bad(parse(state, "--retries", "17", NULL), "--retries", "does not apply"); /* socks */
    bad(parse(state, "--log-level", "loud", NULL), "--log-level", "loud");
    bad(parse(state, "-l", "example.com:80", NULL), "--listen", "example.com:80");
    bad(parse(state, "-l", "1.2.3.4", NULL), "--listen", "1.2.3.4");
    bad(parse(state, "relay", "-l", ":1", "-u", "a:1", "--retries", "17", NULL), "--retries", "17");
}

static void test_bounds_accepted(void **state)
{
    struct listener_cfg *l;

    l = ok(parse(state, "--threads", "256", "--backlog", "65535", "--maxconn", "10000000",
                 "--connect-timeout", "1ms", "--idle-timeout", "4000000s", NULL));
    assert_int_equal(r_threads(state), 256);
    assert_int_equal(l->backlog, 65535);
    assert_int_equal(l->maxconn, 10000000);
    assert_int_equal(l->connect_timeout_ms, 1);
    assert_int_equal(l->idle_timeout_ms, 4000000000u);
}

static void test_too_many_listen(void **state)
{
    bad(parse(state, "-l", ":1", "-l", ":2", "-l", ":3", "-l", ":4", "-l", ":5", "-l", ":6",
              "-l", ":7", "-l", ":8", "-l", ":9", "-l", ":10", "-l", ":11", "-l", ":12",
              "-l", ":13", "-l", ":14", "-l", ":15", "-l", ":16", "-l", ":17", NULL),
        "--listen", "too many");
}

/* ---- upstreams ---- */

static void test_upstreams_and_weights(void **state)
{
    struct listener_cfg *l = ok(parse(state, "relay", "-l", ":9000", "-u", "a.example:80",
                                      "--upstream", "[2001:db8::1]:443,weight=3",
                                      "-u", "10.0.0.1:8080,weight=1000", NULL));

    assert_int_equal(l->nupstreams, 3);
    assert_string_equal(l->upstreams[0].hp.host, "a.example");
    assert_int_equal(l->upstreams[0].weight, 1);
    assert_string_equal(l->upstreams[1].hp.host, "2001:db8::1");
    assert_int_equal(l->upstreams[1].hp.port, 443);
    assert_int_equal(l->upstreams[1].weight, 3);
    assert_int_equal(l->upstreams[2].hp.port, 8080);
    assert_int_equal(l->upstreams[2].weight, 1000);
}

static void test_bad_upstreams(void **state)
{
    static const char *const v[] = {
        "a:1,weight=0", "a:1,weight=1001", "a:1,weight=x", "a:1,weight=", "a:1,weight=3x",
        "a:1,w=3", "a:1,weight=3,weight=4", "a:1,", ":80", "a:0", "a", "a:1:2",
        "a:1,backup,backup", "a:1,maxconn=x", "a:1,maxconn=", "a:1,backup=1",
    };

    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        bad(parse(state, "relay", "-l", ":9000", "-u", v[i], NULL), "--upstream", NULL);
    bad(parse(state, "relay", "-l", ":9000", "-u", "a:1,weight=0", NULL), "weight", NULL);
    bad(parse(state, "relay", "-l", ":9000", "-u", ":80", NULL), "needs a host", NULL);
}

static void test_upstream_params_and_balancing(void **state)
{
    struct listener_cfg *l = ok(parse(state, "relay", "-l", "127.0.0.1:9000", "-u", "a:1,maxconn=5,weight=2",
                                      "-u", "b:2,backup", "--balance", "source", "--check-interval", "500ms",
                                      "--check-expect", "+PONG", "--queue-timeout", "2s", NULL));
    assert_int_equal(l->upstreams[0].maxconn, 5);
    assert_int_equal(l->upstreams[0].weight, 2);
    assert_int_equal(l->upstreams[0].backup, 0);
    assert_int_equal(l->upstreams[1].backup, 1);
    assert_int_equal(l->balance, 2);
    assert_int_equal(l->health.interval_ms, 500);
    assert_int_equal(l->health.rise, 2);
    assert_int_equal(l->health.fall, 3);
    assert_string_equal(l->health.expect, "+PONG");
    assert_int_equal(l->queue_timeout_ms, 2000);
    assert_int_equal(l->queue_size, 1024);
    bad(parse(state, "relay", "-l", ":9000", "-u", "a:1", "--balance", "hash", NULL), "--balance", "'hash'");
    bad(parse(state, "socks", "--balance", "source", NULL), "--balance", "'socks'");
    bad(parse(state, "--allow-hours", "25:00-26:00", NULL), "--allow-hours", NULL);
    l = ok(parse(state, "--rate-per-ip", "20/s", "--rate-burst", "40", NULL));
    assert_int_equal(l->rate_per_ip, 20);
    assert_int_equal(l->rate_burst, 40);
    l = ok(parse(state, "--rate-per-ip", "7", NULL));
    assert_int_equal(l->rate_per_ip, 7);
    bad(parse(state, "--rate-per-ip", "7/m", NULL), "--rate-per-ip", "N/s");
    bad(parse(state, "--rate-per-ip", "+7", NULL), "--rate-per-ip", NULL);
}

/* ---- access lists ---- */

static void test_allow_deny(void **state)
{
    struct listener_cfg *l = ok(parse(state, "--deny", "10.1.0.0/16", "--allow", "10.0.0.0/8",
                                      "--allow-dest", "*.example.com:443", "--deny-dest",
                                      "[2001:db8::]/32", NULL));
    uint8_t a[4];

    assert_int_equal(l->client_acl.n, 2);
    assert_int_equal(l->client_acl.explicit_allow, 1);
    assert_int_equal(inet_pton(AF_INET, "10.1.2.3", a), 1);
    assert_int_equal(acl_check_addr(&l->client_acl, 4, a), 0);
    assert_int_equal(inet_pton(AF_INET, "10.2.2.3", a), 1);
    assert_int_equal(acl_check_addr(&l->client_acl, 4, a), 1);
    assert_int_equal(l->dest_acl.n, 2);
    assert_int_equal(acl_check_dest(&l->dest_acl, "www.example.com", 0, NULL, 443), 1);
    assert_int_equal(acl_check_dest(&l->dest_acl, "www.example.com", 0, NULL, 80), 0);
}

static void test_bad_cidr(void **state)
{
    bad(parse(state, "--allow", "10.0.0.0/33", NULL), "--allow", "10.0.0.0/33");
    bad(parse(state, "--deny", "example.com", NULL), "--deny", "example.com");
    bad(parse(state, "--allow", "10.0.0.0/8", "--allow=1.2.3.4/", NULL), "--allow", "1.2.3.4/");
    bad(parse(state, "--allow-dest", "a b", NULL), "--allow-dest", "a b");
    bad(parse(state, "relay", "--allow-dest", "a", NULL), "--allow-dest", "does not apply");
}

/* ---- users ---- */

static void test_user(void **state)
{
    char name[300], arg[600];
    struct listener_cfg *l;

    l = ok(parse(state, "--user", "alice:secret", "--user", "bob:pa:ss", NULL));
    assert_int_equal(l->nusers, 2);
    assert_string_equal(l->users[0].name, "alice");
    assert_string_equal(l->users[0].pass, "secret");
    assert_int_equal(l->users[0].name_len, 5);
    assert_int_equal(l->users[0].pass_len, 6);
    assert_string_equal(l->users[1].name, "bob");
    assert_string_equal(l->users[1].pass, "pa:ss");     /* split at the first ':' */

    bad(parse(state, "--user", "alice", NULL), "--user", "NAME:PASSWORD");
    bad(parse(state, "--user", ":pw", NULL), "--user", NULL);
    bad(parse(state, "--user", "alice:", NULL), "--user", NULL);
    bad(parse(state, "--user", "", NULL), "--user", NULL);

    /* RFC 1929: 255 bytes each at most. */
    memset(name, 'n', 255);
    name[255] = '\0';
    snprintf(arg, sizeof arg, "%s:%s", name, name);
    l = ok(parse(state, "--user", arg, NULL));
    assert_int_equal(l->users[0].name_len, 255);
    assert_int_equal(l->users[0].pass_len, 255);
    snprintf(arg, sizeof arg, "n%s:p", name);
    bad(parse(state, "--user", arg, NULL), "--user", "1-255");
    snprintf(arg, sizeof arg, "n:p%s", name);
    bad(parse(state, "--user", arg, NULL), "--user", "1-255");
}

/* --via: a chain, the password blanked in argv in both spellings (also
 * when the value is refused), an ss:// key made and its password wiped. */
static void test_via(void **state)
{
    struct listener_cfg *l;
    struct run *r;

    r = parse(state, "--via", "socks5://bob:hunter2@127.0.0.1:1080", "--via=http://u:pw2@[::1]:3128",
              "--via", "ss://aes-128-gcm:sspw@h:8388", NULL);
    l = ok(r);
    assert_int_equal(l->nvia, 3);
    assert_int_equal(l->via[0].proto, VIA_SOCKS5);
    assert_string_equal(l->via[0].pass, "hunter2");
    assert_string_equal(l->via[1].host, "::1");
    assert_int_equal(l->via[2].proto, VIA_SS);
    assert_string_equal(l->via[2].pass, "");            /* wiped once the key is made */
    static const uint8_t zero[32];
    assert_memory_not_equal(l->via[2].key, zero, 32);
    assert_string_equal(r->args[2], "socks5://bob:xxxxxxx@127.0.0.1:1080");
    assert_string_equal(r->args[3], "--via=http://u:xxx@[::1]:3128");
    assert_string_equal(r->args[5], "ss://xxxxxxxxxxxxxxxx@h:8388");

    r = parse(state, "--via", "socks5://bob:hunter2@h", NULL);
    bad(r, "--via", "missing :PORT");
    assert_null(strstr(r->err, "hunter2"));
    assert_string_equal(r->args[2], "socks5://bob:xxxxxxx@h");
    bad(parse(state, "relay", "-l", "127.0.0.1:1", "-u", "h:1", "--via", "ss://aes-128-gcm:p@h:1", "--via",
              "socks5://h:1", NULL), "--via", "must be the last");
    bad(parse(state, "ss-local", "-s", "h:1", "-k", "x", "--via", "socks5://h:1", NULL), "--via", "ss-local");
}

static const char *write_file(void **state, const char *text)
{
    struct run *r = *state;
    int fd;

    snprintf(r->path, sizeof r->path, "/tmp/ferry-users-XXXXXX");
    fd = mkstemp(r->path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return r->path;
}

static void test_users_file(void **state)
{
    const char *path = write_file(state, "# ferry users\n"
                                         "\n"
                                         "alice:one\n"
                                         "bob:two:three\r\n"
                                         "#carol:commented\n"
                                         "dave:x");          /* no final newline */
    struct listener_cfg *l = ok(parse(state, "--users-file", path, "--user", "eve:e", NULL));

    assert_int_equal(l->nusers, 4);
    assert_string_equal(l->users[0].name, "alice");
    assert_string_equal(l->users[0].pass, "one");
    assert_string_equal(l->users[1].name, "bob");
    assert_string_equal(l->users[1].pass, "two:three");     /* CR stripped */
    assert_int_equal(l->users[1].pass_len, 9);
    assert_string_equal(l->users[2].name, "dave");
    assert_string_equal(l->users[2].pass, "x");
    assert_string_equal(l->users[3].name, "eve");
}

/* A bad line is reported as FILE:LINE, and users read before it are freed
 * by cfg_free (ASan checks). */
static void test_users_file_bad_line(void **state)
{
    const char *path = write_file(state, "# comment\n"
                                         "alice:one\n"
                                         "\n"
                                         "bob:two\n"
                                         "no-colon-here\n"
                                         "carol:three\n");
    char where[128];
    struct run *r = parse(state, "--users-file", path, NULL);

    snprintf(where, sizeof where, "%s:5:", path);
    bad(r, "--users-file", where);
    bad(r, "NAME:PASSWORD", NULL);
}

static void test_users_file_missing(void **state)
{
    bad(parse(state, "--users-file", "/nonexistent/ferry-users", NULL), "--users-file",
        "/nonexistent/ferry-users");
}

/* Regression (was a bug): lines are read with fgets() into 1024 bytes, so a long comment line
 * is read in pieces and its tail is parsed as a line of its own: here the
 * text after byte 1023 of a comment becomes a working account. */
static void test_regression_users_file_long_comment(void **state)
{
    char text[1200];
    struct listener_cfg *l;
    struct run *r;

    memset(text, 0, sizeof text);
    text[0] = '#';
    memset(text + 1, ' ', 1022);                 /* 1023 bytes: fills one fgets */
    strcat(text, "old-admin:hunter2\nalice:one\n");
    r = parse(state, "--users-file", write_file(state, text), NULL);
    l = ok(r);
    assert_int_equal(l->nusers, 1);
    assert_string_equal(l->users[0].name, "alice");
}

/* Regression (was a bug): a users file that yields no user (empty, all comments, or a
 * directory, whose read error is never checked) is accepted, and with no
 * users the SOCKS front end needs no authentication: a provisioning slip
 * silently turns an authenticated proxy into an open one. */
static void test_regression_users_file_without_users_fails_open(void **state)
{
    bad(parse(state, "--users-file", write_file(state, "# nobody yet\n\n"), NULL),
        "--users-file", NULL);
    bad(parse(state, "--users-file", "/tmp", NULL), "--users-file", "/tmp");
}

/* ---- subcommands and actions ---- */

static void test_option_not_for_subcommand(void **state)
{
    bad(parse(state, "relay", "-l", ":1", "-u", "a:1", "--user", "a:b", NULL), "--user", "'relay'");
    bad(parse(state, "relay", "--handshake-timeout", "1s", NULL), "--handshake-timeout", "'relay'");
    bad(parse(state, "-u", "a:1", NULL), "--upstream", "'socks'");
    bad(parse(state, "socks", "--retries", "1", NULL), "--retries", "'socks'");
}

static void test_help_and_version(void **state)
{
    struct run *r;

    r = parse(state, "--help", NULL);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->action, CLI_HELP);
    assert_int_equal(r->help_mode, 0);
    r = parse(state, "-h", NULL);
    assert_int_equal(r->action, CLI_HELP);
    r = parse(state, "relay", "--help", NULL);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->action, CLI_HELP);
    assert_int_equal(r->help_mode, MODE_RELAY);
    /* --help wins over the checks that would fail later. */
    r = parse(state, "relay", "-u", "a:1", "--help", NULL);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->action, CLI_HELP);
    r = parse(state, "--version", NULL);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->action, CLI_VERSION);
    r = parse(state, "socks", "-V", NULL);
    assert_int_equal(r->action, CLI_VERSION);
    assert_int_equal(r->help_mode, MODE_SOCKS);
}

static void test_usage_text(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    (void)state;
    assert_non_null(f);
    cli_usage(f, MODE_RELAY);
    fclose(f);
    assert_non_null(strstr(buf, "usage: ferry relay"));
    assert_non_null(strstr(buf, "--upstream"));
    assert_non_null(strstr(buf, "-l, --listen"));
    assert_non_null(strstr(buf, "(default 10s)"));
    assert_null(strstr(buf, "--users-file"));          /* SOCKS only */
    free(buf);
}

static void test_positional_and_subcommand(void **state)
{
    bad(parse(state, "socks", "extra", NULL), "unexpected argument 'extra'", NULL);
    bad(parse(state, "-l", ":1", "extra", NULL), "'extra'", NULL);
    bad(parse(state, "bogus", NULL), "unknown subcommand 'bogus'", NULL);
    bad(parse(state, "relay", "relay", NULL), "'relay'", NULL);
    bad(parse(state, "", NULL), "''", NULL);
}

static void test_dns_server(void **state)
{
    struct listener_cfg *l = ok(parse(state, "--dns-server", "1.1.1.1", "--dns-server",
                                      "9.9.9.9:5353", "--dns-server", "::1",
                                      "--dns-server", "[2001:db8::53]:53", NULL));

    assert_string_equal(l->dns_servers, "1.1.1.1:53,9.9.9.9:5353,[::1]:53,[2001:db8::53]:53");
    bad(parse(state, "--dns-server", "dns.example", NULL), "--dns-server", "dns.example");
    bad(parse(state, "--dns-server", "1.1.1.1:0", NULL), "--dns-server", NULL);
}

/* Regression: 17 servers passed the command line and the config file, and
 * only the resolver, set up per worker, refused them: a health-checked
 * listener then failed start-up through a half-built worker, and one
 * without checks failed every lookup at run time. One server more than the
 * resolver takes is a flag error now. */
#define D "--dns-server"
static void test_dns_server_count_is_bounded(void **state)
{
    ok(parse(state, D, "127.0.0.1", D, "127.0.0.2", D, "127.0.0.3", D, "127.0.0.4", D, "127.0.0.5",
             D, "127.0.0.6", D, "127.0.0.7", D, "127.0.0.8", D, "127.0.0.9", D, "127.0.0.10",
             D, "127.0.0.11", D, "127.0.0.12", D, "127.0.0.13", D, "127.0.0.14", D, "127.0.0.15",
             D, "127.0.0.16", NULL));
    bad(parse(state, D, "127.0.0.1", D, "127.0.0.2", D, "127.0.0.3", D, "127.0.0.4", D, "127.0.0.5",
              D, "127.0.0.6", D, "127.0.0.7", D, "127.0.0.8", D, "127.0.0.9", D, "127.0.0.10",
              D, "127.0.0.11", D, "127.0.0.12", D, "127.0.0.13", D, "127.0.0.14", D, "127.0.0.15",
              D, "127.0.0.16", D, "127.0.0.17", NULL),
        "--dns-server", "at most 16");
}
#undef D

/* Regression (was a bug): parse_dns() means to turn "[v6]" into "[v6]:53" (the val[0] == '['
 * case of its inner format), but the outer condition never lets a bracketed
 * value through, so "[::1]" is rejected; and ":53" (no host at all) is
 * accepted as the IPv4 wildcard and handed to c-ares as a server. */
static void test_regression_dns_server_forms(void **state)
{
    struct listener_cfg *l = ok(parse(state, "--dns-server", "[::1]", NULL));

    assert_string_equal(l->dns_servers, "[::1]:53");
    bad(parse(state, "--dns-server", ":53", NULL), "--dns-server", ":53");
}

/* A SOCKS proxy on a public address needs users, an allow-list or --open;
 * public SOCKS and ss-server listeners refuse loopback, link-local and (for
 * ss-server) private destinations unless allowed explicitly. */
static void test_public_listener_defaults(void **state)
{
    struct listener_cfg *l;
    static const uint8_t lo[4] = { 127, 0, 0, 1 }, meta[4] = { 169, 254, 169, 254 },
                         priv[4] = { 10, 1, 2, 3 }, pub[4] = { 192, 0, 2, 1 };

    bad(parse(state, "-l", "0.0.0.0:1080", NULL), "--open", NULL);
    l = ok(parse(state, "-l", "0.0.0.0:1080", "--user", "a:b", NULL));
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, lo, 80), 0);
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, meta, 80), 0);
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, priv, 80), 1);
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, pub, 80), 1);
    l = ok(parse(state, "-l", "0.0.0.0:1080", "--allow", "10.0.0.0/8", "--allow-dest", "127.0.0.1", NULL));
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, lo, 80), 1);   /* explicit allow wins */
    l = ok(parse(state, "-l", "127.0.0.1:1080", NULL));
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, lo, 80), 1);   /* loopback listener: no default */
    l = ok(parse(state, "ss-server", "-l", ":8388", "-k", "pw", NULL));
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, priv, 80), 0);
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, pub, 80), 1);
}

/* A listener moved after start-up (the API does) meets the same rules
 * through cfg_listener_exposure(): refused as an open SOCKS proxy, or
 * given the default denies, once however often it moves. */
static void test_exposure_after_a_move(void **state)
{
    struct listener_cfg *l;
    char err[256];
    static const uint8_t lo[4] = { 127, 0, 0, 1 }, priv[4] = { 10, 1, 2, 3 };

    l = ok(parse(state, "-l", "127.0.0.1:1080", NULL));
    assert_int_equal(net_addr_parse("0.0.0.0:1080", &l->listen[0], err, sizeof err), 0);
    assert_int_equal(cfg_listener_exposure(l, err, sizeof err), -1);
    assert_non_null(strstr(err, "--open"));
    l = ok(parse(state, "ss-server", "-l", "127.0.0.1:8388", "-k", "pw", NULL));
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, priv, 80), 1);
    assert_int_equal(net_addr_parse("[::]:8388", &l->listen[0], err, sizeof err), 0);
    assert_int_equal(cfg_listener_exposure(l, err, sizeof err), 0);
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, priv, 80), 0);
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, lo, 80), 0);
    size_t n = l->dest_acl.n;
    assert_int_equal(cfg_listener_exposure(l, err, sizeof err), 0);
    assert_int_equal(l->dest_acl.n, n);
}

/* A public SOCKS listener also refuses the metadata ranges ss-server did
 * (fc00::/7, 100.64.0.0/10) and each of the host's own addresses, which
 * reach services bound to 0.0.0.0 as loopback would (issue #20, 6). */
static void test_public_listener_denies_metadata_and_host_addresses(void **state)
{
    static const uint8_t alibaba[4] = { 100, 100, 100, 200 };
    uint8_t aws[16];
    struct ifaddrs *ifs;
    struct listener_cfg *l = ok(parse(state, "-l", "0.0.0.0:1080", "--open", NULL));

    assert_int_equal(inet_pton(AF_INET6, "fd00:ec2::254", aws), 1);
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, alibaba, 80), 0);
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 6, aws, 80), 0);
    assert_int_equal(getifaddrs(&ifs), 0);
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        const struct sockaddr *sa = i->ifa_addr;
        if (sa && sa->sa_family == AF_INET)
            assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4,
                                            (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                                            80), 0);
        else if (sa && sa->sa_family == AF_INET6)
            assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 6,
                                            ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr,
                                            80), 0);
    }
    freeifaddrs(ifs);
    l = ok(parse(state, "-l", "127.0.0.1:1080", NULL));
    assert_int_equal(acl_check_dest(&l->dest_acl, NULL, 4, alibaba, 80), 1);   /* loopback listener: no default */
}

/* Shadowsocks: exactly one secret, a known method, ss-local needs -s; the
 * password is wiped once the key is derived. */
static void test_shadowsocks_options(void **state)
{
    struct listener_cfg *l;

    bad(parse(state, "ss-server", "-l", "127.0.0.1:8388", NULL), "exactly one", NULL);
    bad(parse(state, "ss-server", "-l", "127.0.0.1:8388", "-k", "a", "--key", "AAAA", NULL), "exactly one", NULL);
    bad(parse(state, "ss-server", "-l", "127.0.0.1:8388", "-k", "a", "-m", "rc4-md5", NULL), "--method", "rc4-md5");
    bad(parse(state, "ss-local", "-l", "127.0.0.1:1080", "-k", "a", NULL), "-s HOST:PORT", NULL);
    l = ok(parse(state, "ss-local", "-l", "127.0.0.1:1080", "-k", "a", "-s", "example.com:8388",
                 "-m", "aes-128-gcm", NULL));
    assert_string_equal(l->ss_method, "aes-128-gcm");
    assert_null(l->ss_password);
    assert_string_equal(((struct run *)*state)->args[5], "x");   /* "-k a": blanked in argv */
    assert_string_equal(l->ss_server.host, "example.com");
    /* EVP_BytesToKey(MD5, "a") = md5("a") = 0cc175b9c0f1b6a831c399e269772661 */
    assert_memory_equal(l->ss_key, "\x0c\xc1\x75\xb9\xc0\xf1\xb6\xa8\x31\xc3\x99\xe2\x69\x77\x26\x61", 16);
}

/* --rewrite: repeatable, kept in order, on every mode; a bad spec names
 * the flag and the column. */
static void test_rewrite(void **state)
{
    struct listener_cfg *l = ok(parse(state, "relay", "-l", ":1", "-u", "a:1", "--rewrite", "upstream:a\\:b:c",
                                      "--rewrite=downstream:hex:00ff::max=3", NULL));
    assert_int_equal(l->rewrite.n, 2);
    assert_memory_equal(l->rewrite.rules[0].match, "a:b", 3);
    assert_int_equal(l->rewrite.rules[1].dirs, REWRITE_DOWNSTREAM);
    assert_int_equal(l->rewrite.rules[1].repl_len, 0);
    assert_int_equal(l->rewrite.rules[1].max, 3);
    l = ok(parse(state, "--rewrite", "both:x:y", NULL));     /* socks */
    assert_int_equal(l->rewrite.n, 1);
    bad(parse(state, "--rewrite", "upstream::x", NULL), "--rewrite: column 10:", "empty");
    bad(parse(state, "--rewrite", "sideways:x:y", NULL), "--rewrite: column 1:", "upstream, downstream or both");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_duration),
        T(test_rewrite),
        T(test_duration_bad),
        T(test_defaults_socks),
        T(test_explicit_socks_subcommand),
        T(test_defaults_relay),
        T(test_relay_needs_upstream_and_listen),
        T(test_value_forms),
        T(test_public_listener_defaults),
        T(test_exposure_after_a_move),
        T(test_public_listener_denies_metadata_and_host_addresses),
        T(test_shadowsocks_options),
        T(test_unknown_option),
        T(test_option_needs_value),
        T(test_bad_values_name_the_flag),
        T(test_bounds_accepted),
        T(test_too_many_listen),
        T(test_upstreams_and_weights),
        T(test_bad_upstreams),
        T(test_upstream_params_and_balancing),
        T(test_allow_deny),
        T(test_bad_cidr),
        T(test_user),
        T(test_via),
        T(test_users_file),
        T(test_users_file_bad_line),
        T(test_users_file_missing),
        T(test_regression_users_file_long_comment),
        T(test_regression_users_file_without_users_fails_open),
        T(test_option_not_for_subcommand),
        T(test_help_and_version),
        T(test_usage_text),
        T(test_positional_and_subcommand),
        T(test_dns_server),
        T(test_dns_server_count_is_bounded),
        T(test_regression_dns_server_forms),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
