/* syslog.h - --syslog: log lines as syslog datagrams, one line each.
 *
 * An extra destination, next to stderr or --log-file (as HAProxy sends to
 * every `log` target and nginx's `error_log syslog:` is one more log). The
 * datagrams are RFC 3164 (BSD) messages, HAProxy's default format:
 *
 *     <PRI>Mmm dd hh:mm:ss TAG[PID]: MSG          to a unix socket (/dev/log)
 *     <PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG     over UDP
 *
 * A local socket gets no HOST, as glibc's syslog(3) sends it (rsyslog's
 * imuxsock and journald parse that form and add the host themselves); a
 * UDP collector gets the short host name (RFC 3164 section 4.1.2).
 *
 * syslog.c speaks the datagram protocol itself over a socket of its own:
 * glibc's syslog(3) can name neither a socket path nor a UDP address, and
 * blocks when the daemon stalls. Here every send is non-blocking: a line
 * the daemon does not take at once is dropped and counted
 * (syslog_dropped_lines(): ferry_syslog_dropped_lines_total). The caller
 * is the log's writer thread (obs/log.c), so a worker never waits for it.
 *
 * The parsers and syslog_format() are pure; the rest is the one process-wide
 * socket.
 */
#ifndef FERRY_SYSLOG_H
#define FERRY_SYSLOG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Severities (RFC 5424 table 2), named apart from <syslog.h>'s macros. */
enum {
    SYSLOG_SEV_ERR = 3,
    SYSLOG_SEV_WARNING = 4,
    SYSLOG_SEV_NOTICE = 5,
    SYSLOG_SEV_INFO = 6,
    SYSLOG_SEV_DEBUG = 7,
};

#define SYSLOG_FACILITY_DEFAULT 3       /* daemon */
#define SYSLOG_TAG_MAX 32               /* RFC 3164: at most 32 characters; --syslog-tag is
                                         * a name like a listener's (cfg_name_ok) */
/* The longest header syslog_format() writes: "<191>" + "Mmm dd hh:mm:ss "
 * + a 64-byte host and a space + the tag + "[PID]: ". */
#define SYSLOG_HEADER_MAX 160
/* A datagram holds a header and at most SYSLOG_MSG_MAX bytes of message
 * (ferry's lines are at most 2048 bytes, obs/log.c): longer is cut. */
#define SYSLOG_MSG_MAX 2048
#define SYSLOG_DATAGRAM_MAX (SYSLOG_HEADER_MAX + SYSLOG_MSG_MAX)

/* "kern", "user", ... "local7", as syslog.conf names them -> 0..23, or -1. */
int syslog_facility_parse(const char *name);
/* The name of a facility code, "?" if none. */
const char *syslog_facility_name(int facility);

/* Where --syslog sends. */
enum syslog_kind { SYSLOG_UNIX, SYSLOG_UDP };
struct syslog_target {
    enum syslog_kind kind;
    char path[108];             /* SYSLOG_UNIX: the socket's absolute path (sun_path) */
    char host[256];             /* SYSLOG_UDP: an IP literal (no brackets) or a name */
    uint16_t port;
};

/* "unix:/PATH" or "/PATH" (a unix datagram socket such as /dev/log),
 * "udp:HOST:PORT", "HOST:PORT", "[v6]:PORT" (UDP). Pure: a name is looked
 * up by syslog_open(). 0, or -1 with a one-line reason. */
int syslog_target_parse(const char *spec, struct syslog_target *t, char *err, size_t errlen);

/* The fixed part of every message. */
struct syslog_header {
    int facility;               /* 0..23 */
    const char *host;           /* NULL: none (a local socket) */
    const char *tag;
    long pid;
};

/* One message: "<PRI>TIMESTAMP [HOST ]TAG[PID]: MSG" with tm (local time)
 * as TIMESTAMP, into out (no NUL, no newline). msg (len bytes, no NUL
 * needed) is cut to what fits in cap; a control byte in it (a newline, a
 * tab, 0x7f) becomes '?', so one message is one line for every reader.
 * Returns the length, or 0 when cap cannot hold the header. */
size_t syslog_format(char *out, size_t cap, const struct syslog_header *h, int severity, const struct tm *tm,
                     const char *msg, size_t len);

/* --syslog: opens the socket (a name is looked up now, once: the first
 * address getaddrinfo gives) and connects it, while the process has one
 * thread, before any privilege drop: a connected unix socket keeps
 * working under --chroot. 0; 1 when the socket cannot connect yet (no
 * daemon listens at the path: a warning in err; lines are dropped until
 * it can); -1 with a reason when the name does not resolve. */
int syslog_open(const struct syslog_target *t, int facility, const char *tag, char *err, size_t errlen);
int syslog_active(void);
/* The path a reconnect uses from now on (the name inside --chroot,
 * core/privdrop.h); "" when none reaches it. Unix sockets only; call
 * before the workers start. */
void syslog_set_reconnect_path(const char *path);

/* What a send did, for the log to say (obs/log.c). */
enum syslog_sent {
    SYSLOG_SENT,
    SYSLOG_DROPPED,             /* not taken; counted */
    SYSLOG_FAILING,             /* dropped: the daemon went away (errtext: why); said once */
    SYSLOG_RESUMED,             /* delivered after SYSLOG_FAILING; *lost lines were dropped */
    SYSLOG_LOSSY,               /* delivered; *lost lines were dropped since last said (a full
                                 * queue, a UDP port refused), said at most every 10 s */
};
/* Sends one message of the given severity. Never blocks: a line the socket
 * does not take at once is dropped. When the daemon went away (its socket
 * closed: a restart), the socket is made and connected again at once, and
 * while that fails at the next line at most once a second. Thread-safe. */
enum syslog_sent syslog_send(int severity, const char *msg, size_t len, uint64_t *lost, char *errtext,
                             size_t errlen);
/* SIGUSR1: a new socket, connected now. 0, or -1 with a reason (sends keep
 * retrying once a second). */
int syslog_reconnect(char *err, size_t errlen);
/* "unix:/dev/log" or "udp:HOST:PORT", for log lines. */
const char *syslog_target_text(void);
/* Lines not delivered since start. */
uint64_t syslog_dropped_lines(void);
/* Closes the socket; when no other thread logs. */
void syslog_close(void);

#endif
