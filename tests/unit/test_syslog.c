/* test_syslog.c - unit tests for obs/syslog: facility names, the
 * --syslog TARGET parser, the RFC 3164 message (exact bytes, PRI at its
 * bounds, control bytes, truncation at every capacity around the header and
 * the end), and the socket's states against a unix datagram socket of the
 * test's own: delivered, daemon gone (said once, counted), back after a
 * reconnect (the count said), and a full queue (dropped, never blocking). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "obs/syslog.h"

static void test_facilities(void **state)
{
    (void)state;
    static const char *names[] = { "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
                                   "authpriv", "ftp" };
    for (int i = 0; i < 12; i++) {
        assert_int_equal(syslog_facility_parse(names[i]), i);
        assert_string_equal(syslog_facility_name(i), names[i]);
    }
    char local[8];
    for (int i = 0; i < 8; i++) {
        snprintf(local, sizeof(local), "local%d", i);
        assert_int_equal(syslog_facility_parse(local), 16 + i);
        assert_string_equal(syslog_facility_name(16 + i), local);
    }
    assert_int_equal(syslog_facility_parse("daemon"), SYSLOG_FACILITY_DEFAULT);
    const char *bad[] = { "", "local8", "Daemon", "daemon ", "3", "security", "LOG_DAEMON" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) assert_int_equal(syslog_facility_parse(bad[i]), -1);
    assert_string_equal(syslog_facility_name(12), "?");
    assert_string_equal(syslog_facility_name(-1), "?");
}

static void good_target(const char *spec, enum syslog_kind kind, const char *where, unsigned port)
{
    struct syslog_target t;
    char err[300] = "";
    assert_int_equal(syslog_target_parse(spec, &t, err, sizeof(err)), 0);
    assert_int_equal(t.kind, kind);
    assert_string_equal(kind == SYSLOG_UNIX ? t.path : t.host, where);
    assert_int_equal(t.port, port);
}

static void bad_target(const char *spec, const char *why)
{
    struct syslog_target t;
    char err[300] = "";
    assert_int_equal(syslog_target_parse(spec, &t, err, sizeof(err)), -1);
    if (!strstr(err, why)) fail_msg("'%s': '%s' lacks '%s'", spec, err, why);
}

static void test_targets(void **state)
{
    (void)state;
    good_target("unix:/dev/log", SYSLOG_UNIX, "/dev/log", 0);
    good_target("/dev/log", SYSLOG_UNIX, "/dev/log", 0);
    good_target("/run/systemd/journal/dev-log", SYSLOG_UNIX, "/run/systemd/journal/dev-log", 0);
    good_target("udp:127.0.0.1:514", SYSLOG_UDP, "127.0.0.1", 514);
    good_target("10.1.2.3:5140", SYSLOG_UDP, "10.1.2.3", 5140);
    good_target("[::1]:514", SYSLOG_UDP, "::1", 514);
    good_target("udp:[2001:db8::7]:65535", SYSLOG_UDP, "2001:db8::7", 65535);
    good_target("udp:logs.example.org:514", SYSLOG_UDP, "logs.example.org", 514);
    /* the longest path sun_path holds, and one more */
    char spec[200] = "unix:/";
    memset(spec + 6, 'p', 106);
    spec[112] = '\0';
    good_target(spec, SYSLOG_UNIX, spec + 5, 0);
    spec[112] = 'p';
    spec[113] = '\0';
    bad_target(spec, "at most 107 bytes");
    bad_target("unix:dev/log", "absolute path");
    bad_target("unix:", "absolute path");
    bad_target("unix:/", "absolute path");
    bad_target("dev/log", "expected unix:/PATH");
    bad_target("", "expected unix:/PATH");
    bad_target(":514", "expected unix:/PATH");
    bad_target("udp::514", "expected unix:/PATH");
    bad_target("127.0.0.1", "expected unix:/PATH");
    bad_target("127.0.0.1:0", "expected unix:/PATH");
    bad_target("127.0.0.1:65536", "expected unix:/PATH");
    bad_target("udp:", "expected unix:/PATH");
    bad_target("tcp:127.0.0.1:514", "TCP is not supported");
}

static const struct tm when = { .tm_year = 126, .tm_mon = 0, .tm_mday = 5, .tm_hour = 7, .tm_min = 8, .tm_sec = 9 };

static size_t fmt(char *out, size_t cap, const struct syslog_header *h, int sev, const char *msg)
{
    return syslog_format(out, cap, h, sev, &when, msg, strlen(msg));
}

static void test_format(void **state)
{
    (void)state;
    char out[SYSLOG_DATAGRAM_MAX];
    struct syslog_header local = { .facility = 3, .host = NULL, .tag = "ferry", .pid = 42 };
    size_t n = fmt(out, sizeof(out), &local, SYSLOG_SEV_INFO, "sess=1 end=client_closed");
    assert_int_equal(n, strlen("<30>Jan  5 07:08:09 ferry[42]: sess=1 end=client_closed"));
    assert_memory_equal(out, "<30>Jan  5 07:08:09 ferry[42]: sess=1 end=client_closed", n);

    struct tm dec = when;
    dec.tm_mon = 11;
    dec.tm_mday = 31;
    dec.tm_hour = 23;
    dec.tm_min = 59;
    dec.tm_sec = 60;                  /* a leap second */
    struct syslog_header udp = { .facility = 16, .host = "edge1", .tag = "fy", .pid = 1 };
    n = syslog_format(out, sizeof(out), &udp, SYSLOG_SEV_ERR, &dec, "x", 1);
    assert_memory_equal(out, "<131>Dec 31 23:59:60 edge1 fy[1]: x", n);
    assert_int_equal(n, strlen("<131>Dec 31 23:59:60 edge1 fy[1]: x"));

    /* PRI at its ends: kern.emerg and local7.debug */
    struct syslog_header k = { .facility = 0, .tag = "t", .pid = 7 };
    n = fmt(out, sizeof(out), &k, 0, "");
    assert_memory_equal(out, "<0>Jan  5 07:08:09 t[7]: ", n);
    k.facility = 23;
    n = fmt(out, sizeof(out), &k, SYSLOG_SEV_DEBUG, "");
    assert_memory_equal(out, "<191>Jan  5 07:08:09 t[7]: ", n);

    /* one message is one line: control bytes become '?', UTF-8 stays */
    n = fmt(out, sizeof(out), &local, SYSLOG_SEV_NOTICE, "a\nb\tc\rd\x7f" "e\x01 caf\xc3\xa9");
    assert_memory_equal(out + n - 16, "a?b?c?d?e? caf\xc3\xa9", 16);
}

/* Every capacity from 0 to past the whole message: the header or nothing,
 * then as much of the message as fits, never a byte past cap. */
static void test_truncation(void **state)
{
    (void)state;
    char out[600], msg[300];
    struct syslog_header h = { .facility = 3, .tag = "ferry", .pid = 4242 };
    for (size_t i = 0; i < sizeof(msg) - 1; i++) msg[i] = (char)('a' + i % 26);
    msg[sizeof(msg) - 1] = '\0';
    const size_t head = strlen("<30>Jan  5 07:08:09 ferry[4242]: ");
    for (size_t cap = 0; cap <= head + sizeof(msg) + 5; cap++) {
        memset(out, 'Z', sizeof(out));
        size_t n = fmt(out, cap, &h, SYSLOG_SEV_INFO, msg);
        if (cap < head) {
            assert_int_equal(n, 0);
            continue;
        }
        size_t want = cap - head < strlen(msg) ? cap - head : strlen(msg);
        assert_int_equal(n, head + want);
        assert_memory_equal(out + head, msg, want);
        assert_int_equal(out[n], 'Z');
    }
    /* a cut never splits a UTF-8 character */
    size_t n = fmt(out, head + 2, &h, SYSLOG_SEV_INFO, "a\xc3\xa9");
    assert_int_equal(n, head + 1);
    n = fmt(out, head + 3, &h, SYSLOG_SEV_INFO, "a\xc3\xa9");
    assert_int_equal(n, head + 3);
    n = fmt(out, head + 3, &h, SYSLOG_SEV_INFO, "ab\xe2\x82\xac");   /* the euro sign's 3 bytes */
    assert_int_equal(n, head + 2);
}

/* The longest header (a 64-byte host, a 32-byte tag, the widest pid) and the
 * longest line fit in a datagram whole. */
static void test_bound(void **state)
{
    (void)state;
    static char out[SYSLOG_DATAGRAM_MAX], msg[SYSLOG_MSG_MAX + 1];
    char host[65], tag[SYSLOG_TAG_MAX + 1];
    memset(host, 'h', 64);
    host[64] = '\0';
    memset(tag, 't', SYSLOG_TAG_MAX);
    tag[SYSLOG_TAG_MAX] = '\0';
    memset(msg, 'm', SYSLOG_MSG_MAX);
    msg[SYSLOG_MSG_MAX] = '\0';
    struct syslog_header h = { .facility = 23, .host = host, .tag = tag, .pid = LONG_MAX };
    size_t head = fmt(out, sizeof(out), &h, SYSLOG_SEV_DEBUG, "");
    assert_true(head > 0 && head <= SYSLOG_HEADER_MAX);
    assert_int_equal(fmt(out, sizeof(out), &h, SYSLOG_SEV_DEBUG, msg), head + SYSLOG_MSG_MAX);
}

/* ---- the socket, against a unix datagram socket in a temporary directory ---- */

struct daemon_sock {
    char dir[64], path[108];
    int fd;
};

static void daemon_listen(struct daemon_sock *d)
{
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", d->path);
    d->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(d->fd >= 0);
    assert_int_equal(bind(d->fd, (struct sockaddr *)&un, sizeof(un)), 0);
}

static void daemon_stop(struct daemon_sock *d)
{
    close(d->fd);
    unlink(d->path);
    d->fd = -1;
}

/* The next datagram's message (after "TAG[PID]: "), or "" if none waits. */
static const char *received(struct daemon_sock *d, char *buf, size_t cap)
{
    ssize_t n = recv(d->fd, buf, cap - 1, 0);
    if (n < 0) return "";
    buf[n] = '\0';
    char *m = strstr(buf, "]: ");
    assert_non_null(m);
    return m + 3;
}

static enum syslog_sent send_text(const char *text, uint64_t *lost)
{
    char why[128] = "";
    return syslog_send(SYSLOG_SEV_INFO, text, strlen(text), lost, why, sizeof(why));
}

static void test_socket_states(void **state)
{
    (void)state;
    struct daemon_sock d;
    char buf[SYSLOG_DATAGRAM_MAX + 1], err[300] = "", why[128] = "";
    uint64_t lost = 0;
    struct syslog_target t;
    snprintf(d.dir, sizeof(d.dir), "/tmp/ferry-syslog-XXXXXX");
    assert_non_null(mkdtemp(d.dir));
    snprintf(d.path, sizeof(d.path), "%s/log", d.dir);
    snprintf(buf, sizeof(buf), "unix:%s", d.path);
    assert_int_equal(syslog_target_parse(buf, &t, err, sizeof(err)), 0);

    /* no daemon yet: a warning, and lines are dropped until it comes */
    assert_int_equal(syslog_open(&t, 3, "ferry", err, sizeof(err)), 1);
    assert_non_null(strstr(err, "No such file"));
    assert_true(syslog_active());
    assert_int_equal(send_text("lost", &lost), SYSLOG_DROPPED);   /* said at open already */
    assert_int_equal(syslog_dropped_lines(), 1);

    daemon_listen(&d);
    assert_int_equal(syslog_reconnect(err, sizeof(err)), 0);
    assert_int_equal(send_text("first", &lost), SYSLOG_RESUMED);
    assert_int_equal(lost, 1);
    assert_string_equal(received(&d, buf, sizeof(buf)), "first");
    assert_int_equal(syslog_send(SYSLOG_SEV_NOTICE, "two\nlines", 9, &lost, why, sizeof(why)), SYSLOG_SENT);
    assert_string_equal(received(&d, buf, sizeof(buf)), "two?lines");
    assert_memory_equal(buf, "<29>", 4);

    /* the daemon goes away: said once, counted; a reconnect finds the new one */
    daemon_stop(&d);
    assert_int_equal(syslog_send(SYSLOG_SEV_INFO, "gone", 4, &lost, why, sizeof(why)), SYSLOG_FAILING);
    assert_true(why[0] != '\0');
    assert_int_equal(send_text("gone too", &lost), SYSLOG_DROPPED);
    assert_int_equal(syslog_dropped_lines(), 3);
    daemon_listen(&d);
    assert_int_equal(syslog_reconnect(err, sizeof(err)), 0);
    assert_int_equal(send_text("back", &lost), SYSLOG_RESUMED);
    assert_int_equal(lost, 2);
    assert_string_equal(received(&d, buf, sizeof(buf)), "back");

    /* a daemon that reads nothing: lines are dropped at once, never waited for */
    uint64_t before = syslog_dropped_lines();
    int full = 0;
    for (int i = 0; i < 100000 && !full; i++) full = send_text("flood", &lost) == SYSLOG_DROPPED;
    assert_true(full);
    assert_int_equal(syslog_dropped_lines(), before + 1);
    while (recv(d.fd, buf, sizeof(buf), 0) > 0) {}
    assert_int_not_equal(send_text("drained", &lost), SYSLOG_DROPPED);

    syslog_close();
    assert_false(syslog_active());
    assert_int_equal(send_text("closed", &lost), SYSLOG_SENT);   /* nothing to do */
    daemon_stop(&d);
    rmdir(d.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_facilities),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_socket_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
