/* syslog.c - see syslog.h. */
#include "obs/syslog.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/addr.h"

/* ---- pure: names, targets, the message ---- */

/* The codes of <syslog.h> (and of syslog.conf's names); 12..15 (ntp,
 * security, console, solaris-cron) are left out, as glibc names none. */
static const struct { const char *name; int code; } facilities[] = {
    { "kern", 0 },     { "user", 1 },    { "mail", 2 },    { "daemon", 3 },  { "auth", 4 },
    { "syslog", 5 },   { "lpr", 6 },     { "news", 7 },    { "uucp", 8 },    { "cron", 9 },
    { "authpriv", 10 }, { "ftp", 11 },   { "local0", 16 }, { "local1", 17 }, { "local2", 18 },
    { "local3", 19 },  { "local4", 20 }, { "local5", 21 }, { "local6", 22 }, { "local7", 23 },
};
#define NFACILITIES (sizeof(facilities) / sizeof(facilities[0]))

int syslog_facility_parse(const char *name)
{
    for (size_t i = 0; i < NFACILITIES; i++)
        if (strcmp(name, facilities[i].name) == 0) return facilities[i].code;
    return -1;
}

const char *syslog_facility_name(int facility)
{
    for (size_t i = 0; i < NFACILITIES; i++)
        if (facilities[i].code == facility) return facilities[i].name;
    return "?";
}

int syslog_target_parse(const char *spec, struct syslog_target *t, char *err, size_t errlen)
{
    struct host_port hp;
    char why[200];
    memset(t, 0, sizeof(*t));
    const char *path = strncmp(spec, "unix:", 5) == 0 ? spec + 5 : spec[0] == '/' ? spec : NULL;
    if (path) {
        if (path[0] != '/' || path[1] == '\0' || strlen(path) >= sizeof(t->path)) {
            snprintf(err, errlen, "'%.200s': expected the absolute path of a unix datagram socket (at most %zu "
                     "bytes), such as unix:/dev/log", spec, sizeof(t->path) - 1);
            return -1;
        }
        t->kind = SYSLOG_UNIX;
        snprintf(t->path, sizeof(t->path), "%s", path);
        return 0;
    }
    if (strncmp(spec, "tcp:", 4) == 0) {
        snprintf(err, errlen, "'%.200s': syslog over TCP is not supported: use udp:HOST:PORT or a local socket "
                 "(unix:/dev/log)", spec);
        return -1;
    }
    const char *hostport = strncmp(spec, "udp:", 4) == 0 ? spec + 4 : spec;
    if (host_port_parse(hostport, &hp, 0, why, sizeof(why)) < 0 || hp.host[0] == '\0') {
        snprintf(err, errlen, "'%.200s': expected unix:/PATH, /PATH, udp:HOST:PORT or HOST:PORT", spec);
        return -1;
    }
    t->kind = SYSLOG_UDP;
    snprintf(t->host, sizeof(t->host), "%s", hp.host);
    t->port = hp.port;
    return 0;
}

static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

size_t syslog_format(char *out, size_t cap, const struct syslog_header *h, int severity, const struct tm *tm,
                     const char *msg, size_t len)
{
    char head[SYSLOG_HEADER_MAX + 1];
    int fac = h->facility >= 0 && h->facility <= 23 ? h->facility : SYSLOG_FACILITY_DEFAULT;
    int mon = tm->tm_mon >= 0 && tm->tm_mon < 12 ? tm->tm_mon : 0;
    /* RFC 3164 4.1.2: the day of the month padded with a space, not a 0. */
    int n = snprintf(head, sizeof(head), "<%d>%s %2d %02d:%02d:%02d %.64s%s%.*s[%ld]: ", fac * 8 + (severity & 7),
                     months[mon], tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec, h->host ? h->host : "",
                     h->host ? " " : "", SYSLOG_TAG_MAX, h->tag, h->pid);
    if (n < 0 || (size_t)n >= sizeof(head) || (size_t)n > cap) return 0;
    memcpy(out, head, (size_t)n);
    if (len > cap - (size_t)n) {
        len = cap - (size_t)n;
        while (len > 0 && ((unsigned char)msg[len] & 0xc0) == 0x80) len--;   /* not inside a UTF-8 character */
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)msg[i];
        out[(size_t)n + i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    return (size_t)n + len;
}

/* ---- the socket ---- */

#define RETRY_MS 1000           /* a broken socket is remade at most this often */
#define REPORT_MS 10000         /* drops of a working socket are said at most this often */

static struct {
    pthread_mutex_t lock;
    int active;
    int fd;                     /* -1: none (broken) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[300];             /* unix:PATH / udp:HOST:PORT */
    char host[65];              /* UDP only */
    char tag[SYSLOG_TAG_MAX + 1];
    struct syslog_header hdr;
    struct tm tm;               /* the local time of tm_of, for the timestamp */
    time_t tm_of;
    int broken;                 /* the socket is remade at the next line after retry_ms */
    int broken_errno;           /* why */
    uint64_t retry_ms;
    int failing;                /* SYSLOG_FAILING said, SYSLOG_RESUMED not yet */
    uint64_t unreported;        /* dropped lines not yet said */
    uint64_t reported_ms;       /* when they were last said; 0: never */
} sl = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };
static _Atomic uint64_t dropped_total;

uint64_t syslog_dropped_lines(void) { return atomic_load_explicit(&dropped_total, memory_order_relaxed); }
int syslog_active(void) { return sl.active; }
const char *syslog_target_text(void) { return sl.text; }

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A new socket connected to sl.addr in place of the old one; the next
 * attempt not before RETRY_MS. Lock held. 0, or -1 with errno, and the
 * socket is broken until then. */
static int connect_socket(uint64_t now)
{
    if (sl.fd >= 0) close(sl.fd);
    sl.fd = -1;
    sl.broken = 0;
    sl.retry_ms = now + RETRY_MS;
    int fd = -1;
    if (sl.addrlen == 0) {      /* a unix socket outside --chroot: nothing reaches it any more */
        errno = ENOENT;
        goto fail;
    }
    if ((fd = socket(sl.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) goto fail;
    if (connect(fd, (const struct sockaddr *)&sl.addr, sl.addrlen) < 0) goto fail;
    sl.fd = fd;
    return 0;
fail:
    sl.broken_errno = errno;
    if (fd >= 0) close(fd);
    sl.broken = 1;
    errno = sl.broken_errno;
    return -1;
}

static void set_unix_addr(const char *path)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&sl.addr;
    memset(&sl.addr, 0, sizeof(sl.addr));
    sl.addrlen = 0;
    if (!path[0] || strlen(path) >= sizeof(un->sun_path)) return;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, strlen(path) + 1);
    sl.addrlen = (socklen_t)sizeof(*un);
}

/* The UDP target's address: a literal, or the first answer for a name. */
static int udp_addr(const struct syslog_target *t, char *err, size_t errlen)
{
    struct net_addr a;
    char text[NET_ADDR_STRLEN];
    if (net_addr_from_literal(t->host, t->port, &a) == 0) {
        memcpy(&sl.addr, &a.u, a.len);
        sl.addrlen = a.len;
        snprintf(sl.text, sizeof(sl.text), "udp:%s", net_addr_format(&a, text, sizeof(text)));
        return 0;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM }, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)t->port);
    int r = getaddrinfo(t->host, port, &hints, &res);
    if (r != 0 || !res || res->ai_addrlen > sizeof(sl.addr)) {
        snprintf(err, errlen, "--syslog udp:%.200s:%u: %s", t->host, (unsigned)t->port,
                 r ? gai_strerror(r) : "no address");
        if (res) freeaddrinfo(res);
        return -1;
    }
    memcpy(&sl.addr, res->ai_addr, res->ai_addrlen);
    sl.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(sl.text, sizeof(sl.text), "udp:%s:%u", t->host, (unsigned)t->port);
    return 0;
}

/* The short host name for UDP messages (RFC 3164: no domain). */
static void short_hostname(char *out, size_t outlen)
{
    char name[256];
    size_t n = 0;
    if (gethostname(name, sizeof(name)) < 0) name[0] = '\0';
    name[sizeof(name) - 1] = '\0';
    while (name[n] && name[n] != '.' && n + 1 < outlen) {
        char c = name[n];
        out[n++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ? c : '-';
    }
    out[n] = '\0';
    if (n == 0) snprintf(out, outlen, "localhost");
}

int syslog_open(const struct syslog_target *t, int facility, const char *tag, char *err, size_t errlen)
{
    pthread_mutex_lock(&sl.lock);
    int r = 0;
    if (t->kind == SYSLOG_UNIX) {
        set_unix_addr(t->path);
        snprintf(sl.text, sizeof(sl.text), "unix:%s", t->path);
        sl.hdr.host = NULL;
    } else if (udp_addr(t, err, errlen) < 0) {
        r = -1;
    } else {
        short_hostname(sl.host, sizeof(sl.host));
        sl.hdr.host = sl.host;
    }
    if (r == 0) {
        snprintf(sl.tag, sizeof(sl.tag), "%s", tag);
        sl.hdr.facility = facility;
        sl.hdr.tag = sl.tag;
        sl.hdr.pid = (long)getpid();
        sl.active = 1;
        if (connect_socket(now_ms()) < 0) {
            snprintf(err, errlen, "--syslog %s: %s: lines go there once it can be reached (tried every second, "
                     "and at SIGUSR1)", sl.text, strerror(sl.broken_errno));
            sl.failing = 1;     /* said now; the first line delivered says how many were not */
            r = 1;
        }
    }
    pthread_mutex_unlock(&sl.lock);
    return r;
}

void syslog_set_reconnect_path(const char *path)
{
    pthread_mutex_lock(&sl.lock);
    if (sl.active && sl.addr.ss_family == AF_UNIX) set_unix_addr(path);
    pthread_mutex_unlock(&sl.lock);
}

/* A unix socket whose send failed for a reason other than a full queue:
 * the daemon went away (ECONNREFUSED, ENOTCONN: its socket was closed; a
 * restart makes a new one at the same path). A UDP socket never goes away:
 * its errors are ICMP answers to earlier datagrams (no collector on the
 * port), and the next datagram may well arrive. */
static int peer_gone(int e)
{
    return sl.addr.ss_family == AF_UNIX && e != EAGAIN && e != EWOULDBLOCK && e != ENOBUFS && e != EMSGSIZE;
}

/* A line not delivered: counted; SYSLOG_FAILING when it is the first since
 * the socket broke. Lock held. */
static enum syslog_sent dropped(int e, char *errtext, size_t errlen)
{
    atomic_fetch_add_explicit(&dropped_total, 1, memory_order_relaxed);
    sl.unreported++;
    if (!sl.broken || sl.failing) return SYSLOG_DROPPED;
    sl.failing = 1;
    snprintf(errtext, errlen, "%s", strerror(e));
    return SYSLOG_FAILING;
}

/* A line delivered: says what was dropped before, at once when the socket
 * had broken, else (a queue that was full now and then) at most every
 * REPORT_MS. Lock held. */
static enum syslog_sent delivered(uint64_t now, uint64_t *lost)
{
    enum syslog_sent r = sl.failing ? SYSLOG_RESUMED : SYSLOG_LOSSY;
    if (!sl.failing && (!sl.unreported || (sl.reported_ms && now < sl.reported_ms + REPORT_MS)))
        return SYSLOG_SENT;
    *lost = sl.unreported;
    sl.unreported = 0;
    sl.reported_ms = now;
    sl.failing = 0;
    return r;
}

enum syslog_sent syslog_send(int severity, const char *msg, size_t len, uint64_t *lost, char *errtext,
                             size_t errlen)
{
    char buf[SYSLOG_DATAGRAM_MAX];
    time_t t = time(NULL);
    uint64_t now = now_ms();
    pthread_mutex_lock(&sl.lock);
    if (t != sl.tm_of) {        /* localtime_r takes a lock of its own: once a second */
        localtime_r(&t, &sl.tm);
        sl.tm_of = t;
    }
    enum syslog_sent r = SYSLOG_SENT;
    if (!sl.active) goto out;
    if (sl.broken && (now < sl.retry_ms || connect_socket(now) < 0)) {
        r = dropped(sl.broken_errno, errtext, errlen);
        goto out;
    }
    size_t n = syslog_format(buf, sizeof(buf), &sl.hdr, severity, &sl.tm, msg, len);
    int e = send(sl.fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? errno : 0;
    /* The daemon went away: it may be back already (a restart), so the
     * socket is remade at once, unless that was tried in the last RETRY_MS. */
    if (e && peer_gone(e) && now >= sl.retry_ms && connect_socket(now) == 0)
        e = send(sl.fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? errno : 0;
    if (e && peer_gone(e) && !sl.broken) {
        sl.broken = 1;
        sl.broken_errno = e;
    }
    r = e ? dropped(sl.broken ? sl.broken_errno : e, errtext, errlen) : delivered(now, lost);
out:
    pthread_mutex_unlock(&sl.lock);
    return r;
}

int syslog_reconnect(char *err, size_t errlen)
{
    pthread_mutex_lock(&sl.lock);
    int r = 0;
    if (sl.active && connect_socket(now_ms()) < 0) {
        snprintf(err, errlen, "cannot reconnect to syslog %s: %s (tried again every second)", sl.text,
                 strerror(sl.broken_errno));
        r = -1;
    }
    pthread_mutex_unlock(&sl.lock);
    return r;
}

void syslog_close(void)
{
    pthread_mutex_lock(&sl.lock);
    if (sl.fd >= 0) close(sl.fd);
    sl.fd = -1;
    sl.active = 0;
    pthread_mutex_unlock(&sl.lock);
}
