/* log.c - see log.h. */
#include "obs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/wfile.h"
#include "obs/syslog.h"

int log_level_current = LOG_INFO;

static const char *const level_names[] = { "quiet", "error", "warn", "info", "debug" };

int log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

void log_set_level(int level) { log_level_current = level; }

/* Set once at start, before any worker exists. */
static int log_format = LOG_TEXT;

int log_format_parse(const char *name)
{
    if (strcmp(name, "text") == 0) return LOG_TEXT;
    if (strcmp(name, "json") == 0) return LOG_JSON;
    return -1;
}

void log_set_format(int format) { log_format = format; }

static int log_sess_mask = LOG_SESS_END;

int log_sessions_parse(const char *list)
{
    int mask = 0;
    for (const char *p = list;;) {
        size_t n = strcspn(p, ",");
        if (n == 5 && strncmp(p, "start", 5) == 0) mask |= LOG_SESS_START;
        else if (n == 3 && strncmp(p, "end", 3) == 0) mask |= LOG_SESS_END;
        else return -1;
        if (!p[n]) return mask;
        p += n + 1;
    }
}

void log_set_sessions(int mask) { log_sess_mask = mask; }
int log_sessions(void) { return log_sess_mask; }

static int log_char_ok(unsigned char c) { return c > 0x20 && c < 0x7f && c != '='; }

void log_sanitize(char *dst, size_t dstlen, const char *src)
{
    size_t i = 0;
    if (dstlen == 0) return;
    for (; src[i] && i + 1 < dstlen; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = log_char_ok(c) ? (char)c : '?';
    }
    dst[i] = '\0';
}

/* Where lines go: stderr, or the --log-file descriptor. It changes once,
 * in log_file_open(), before any other thread exists; a reopen keeps the
 * number and swaps the file under it (dup3), so writers never see a
 * closed descriptor. Atomic all the same, so that a load on another
 * thread is never a data race, whatever the order of startup becomes. */
static atomic_int log_fd = STDERR_FILENO;

/* Writes the whole line or gives up: logging must never fail the caller. */
static void write_fd(const char *buf, size_t len)
{
    int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n <= 0) return;
        buf += n;
        len -= (size_t)n;
    }
}

/* --syslog: the severity of one of our own lines, and the message to send
 * (ms, mlen): a text line without its time and level ("TIME LEVEL msg"),
 * a plain line ("ferry: msg", notice) without its prefix, a JSON line
 * whole, with its "level" as the severity. Lines come only from this file,
 * so their form is known. */
static int syslog_line(const char *line, size_t len, const char **ms, size_t *mlen)
{
    static const int severity[] = { SYSLOG_SEV_NOTICE, SYSLOG_SEV_ERR, SYSLOG_SEV_WARNING, SYSLOG_SEV_INFO,
                                    SYSLOG_SEV_DEBUG };
    static const char json_level[] = "\"level\":\"";
    const char *lv = NULL, *end = line + len;
    *ms = line;
    *mlen = len;
    if (len >= 7 && memcmp(line, "ferry: ", 7) == 0) {
        *ms = line + 7;
        *mlen = len - 7;
        return SYSLOG_SEV_NOTICE;
    }
    if (line[0] == '{') {
        lv = memmem(line, len < 64 ? len : 64, json_level, sizeof(json_level) - 1);
        if (lv) lv += sizeof(json_level) - 1;
    } else {
        const char *sp = memchr(line, ' ', len);
        if (sp) lv = sp + 1;
    }
    for (int i = LOG_ERROR; lv && i <= LOG_DEBUG; i++) {
        size_t n = strlen(level_names[i]);
        if ((size_t)(end - lv) <= n || memcmp(lv, level_names[i], n) != 0 || (lv[n] != ' ' && lv[n] != '"'))
            continue;
        if (line[0] != '{') {
            *ms = lv + n + 1;
            *mlen = (size_t)(end - *ms);
        }
        return severity[i];
    }
    return SYSLOG_SEV_NOTICE;
}

/* Sends each line of buf (whole lines, each ending in '\n') to syslog.
 * What syslog_send() says about drops becomes a line of the log (through
 * log_plain: queued when the writer runs; else written now, which sends it
 * here again once at most, since a second failure is not said). */
static void write_syslog(const char *buf, size_t len)
{
    char why[128];
    for (const char *p = buf, *end = buf + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p), mlen;
        const char *ms;
        uint64_t lost = 0;
        const char *line = p;
        p += n + 1;
        if (n == 0) continue;
        int severity = syslog_line(line, n, &ms, &mlen);
        enum syslog_sent r = syslog_send(severity, ms, mlen, &lost, why, sizeof(why));
        if (r == SYSLOG_SENT || r == SYSLOG_DROPPED || !log_enabled(LOG_ERROR)) continue;
        if (r == SYSLOG_FAILING)
            log_plain("syslog %s: %s: dropping lines until it takes them again (ferry_syslog_dropped_lines_total)",
                      syslog_target_text(), why);
        else if (r == SYSLOG_RESUMED)
            log_plain("syslog %s: delivering again; %llu line%s dropped (ferry_syslog_dropped_lines_total)",
                      syslog_target_text(), (unsigned long long)lost, lost == 1 ? "" : "s");
        else
            log_plain("syslog %s: %llu line%s dropped: the daemon's queue was full, or nothing listens on the UDP "
                      "port (ferry_syslog_dropped_lines_total)", syslog_target_text(), (unsigned long long)lost,
                      lost == 1 ? "" : "s");
    }
}

/* Every destination: the file (or stderr), and syslog. */
static void write_out(const char *buf, size_t len)
{
    write_fd(buf, len);
    if (syslog_active()) write_syslog(buf, len);
}

/* The writer thread (log_writer_start): lines are appended to one of two
 * buffers, which the writer swaps and writes out, so that a slow reader of
 * the log (a full pipe, a stalled journald, a slow disk) stalls the writer
 * and never a worker. When the buffer being filled has no room, the lines
 * are dropped and counted; the writer says how many once it catches up. */
#define LOG_WBUF_SIZE (512u * 1024u)
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    char *fill, *out;          /* fill: appended to; out: the writer's */
    size_t fill_len;
    int running, stop;
    uint64_t unreported;       /* dropped lines not yet said */
} writer = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
static _Atomic uint64_t dropped_total;

uint64_t log_dropped_lines(void) { return atomic_load_explicit(&dropped_total, memory_order_relaxed); }

static size_t count_lines(const char *buf, size_t len)
{
    size_t n = 0;
    for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))) != NULL; p++) n++;
    return n ? n : 1;
}

static void write_line(const char *buf, size_t len)
{
    if (!buf || !len) return;
    pthread_mutex_lock(&writer.lock);
    if (!writer.running || !writer.fill) {
        pthread_mutex_unlock(&writer.lock);
        write_out(buf, len);
        return;
    }
    if (len > LOG_WBUF_SIZE - writer.fill_len) {
        size_t n = count_lines(buf, len);
        writer.unreported += n;
        atomic_fetch_add_explicit(&dropped_total, n, memory_order_relaxed);
    } else {
        memcpy(writer.fill + writer.fill_len, buf, len);
        writer.fill_len += len;
        pthread_cond_signal(&writer.cond);
    }
    pthread_mutex_unlock(&writer.lock);
}

#define LOG_LINE_MAX 2048
static size_t plain_line(char *out, size_t cap, const char *text);

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&writer.lock);
    for (;;) {
        while (!writer.fill_len && !writer.unreported && !writer.stop) pthread_cond_wait(&writer.cond, &writer.lock);
        if (!writer.fill_len && !writer.unreported) break;     /* stop, and nothing left */
        char *buf = writer.fill;
        size_t len = writer.fill_len;
        uint64_t dropped = writer.unreported;
        writer.fill = writer.out;
        writer.out = buf;
        writer.fill_len = 0;
        writer.unreported = 0;
        pthread_mutex_unlock(&writer.lock);
        write_out(buf, len);
        if (dropped) {
            /* Written here, not queued: formatted as every other line
             * (JSON too), to every destination. */
            char text[200], line[LOG_LINE_MAX];
            snprintf(text, sizeof(text), "%llu log line%s dropped: the log could not keep up "
                     "(a slow disk or reader); ferry_log_dropped_lines_total counts them",
                     (unsigned long long)dropped, dropped == 1 ? "" : "s");
            write_out(line, plain_line(line, sizeof(line), text));
        }
        pthread_mutex_lock(&writer.lock);
    }
    pthread_mutex_unlock(&writer.lock);
    return NULL;
}

int log_writer_start(void)
{
    char *a = malloc(LOG_WBUF_SIZE), *b = malloc(LOG_WBUF_SIZE);
    if (!a || !b) {
        free(a);
        free(b);
        return -1;
    }
    pthread_mutex_lock(&writer.lock);
    writer.fill = a;
    writer.out = b;
    writer.fill_len = 0;
    writer.stop = 0;
    int r = pthread_create(&writer.thread, NULL, writer_main, NULL);
    writer.running = r == 0;
    pthread_mutex_unlock(&writer.lock);
    if (r != 0) {
        free(a);
        free(b);
        errno = r;
        return -1;
    }
    return 0;
}

void log_writer_stop(void)
{
    pthread_mutex_lock(&writer.lock);
    if (!writer.running) {
        pthread_mutex_unlock(&writer.lock);
        return;
    }
    writer.stop = 1;
    pthread_cond_signal(&writer.cond);
    pthread_mutex_unlock(&writer.lock);
    pthread_join(writer.thread, NULL);     /* it writes everything queued first */
    pthread_mutex_lock(&writer.lock);
    writer.running = 0;
    free(writer.fill);
    free(writer.out);
    writer.fill = writer.out = NULL;
    pthread_mutex_unlock(&writer.lock);
}

/* This thread's pending lines, or NULL when it does not batch. */
#define LOG_BATCH_SIZE (16u * 1024u)
_Static_assert(LOG_LINE_MAX <= LOG_BATCH_SIZE, "a line must fit an empty batch");
_Static_assert(LOG_LINE_MAX <= SYSLOG_MSG_MAX, "a line must fit a syslog message whole");
static __thread char *batch;
static __thread size_t batch_len;

int log_batch_begin(void)
{
    if (!batch) batch = malloc(LOG_BATCH_SIZE);
    batch_len = 0;
    return batch ? 0 : -1;
}

void log_flush(void)
{
    if (!batch_len) return;
    write_line(batch, batch_len);
    batch_len = 0;
}

void log_batch_end(void)
{
    log_flush();
    free(batch);
    batch = NULL;
}

/* Queues an info/debug line on a batching thread; anything else flushes
 * what is queued (keeping the order) and goes out now. */
static void emit(int level, const char *line, size_t len)
{
    if (batch && level >= LOG_INFO) {
        if (len > LOG_BATCH_SIZE - batch_len) log_flush();
        memcpy(batch + batch_len, line, len);
        batch_len += len;
        return;
    }
    log_flush();
    write_line(line, len);
}

static void format_time(char *out, size_t outlen)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000));
}

/* A key=value token at p (key: lower case letters, digits, '_'); its
 * lengths, or 0 if p does not start one. Values are sanitised where they
 * are written (no space, no '='), so a token ends at the next space. */
static size_t kv_token(const char *p, size_t *klen)
{
    size_t k = 0, n;
    while ((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= '0' && p[k] <= '9') || p[k] == '_') k++;
    if (k == 0 || p[k] != '=') return 0;
    for (n = k + 1; p[n] && p[n] != ' '; n++) {}
    *klen = k;
    return n;
}

static json_t *json_value(const char *v, size_t len)
{
    size_t i = 0;
    while (i < len && v[i] >= '0' && v[i] <= '9') i++;
    if (i == len && len > 0 && len < 19 && (len == 1 || v[0] != '0')) return json_integer(strtoll(v, NULL, 10));
    return json_stringn(v, len);
}

/* time, level, the leading key=value tokens as fields, the rest as msg.
 * 0, or -1 when the JSON could not be made (the text line goes instead). */
static int format_json(char *line, size_t cap, size_t *len, int level, const char *text)
{
    char when[64], key[64];
    json_t *o = json_object();
    if (!o) return -1;
    format_time(when, sizeof(when));
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "level", json_string(level_names[level]));
    const char *p = text;
    size_t klen, n;
    while ((n = kv_token(p, &klen)) && klen < sizeof(key)) {
        memcpy(key, p, klen);
        key[klen] = '\0';
        json_object_set_new(o, key, json_value(p + klen + 1, n - klen - 1));
        p += n;
        while (*p == ' ') p++;
    }
    if (*p) json_object_set_new(o, "msg", json_string(p));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!s) return -1;
    size_t sl = strlen(s);
    int ok = sl + 2 <= cap;
    if (ok) {
        /* A line for write(), not a C string: it ends in '\n', no NUL. */
        memcpy(line, s, sl);   /* NOLINT(bugprone-not-null-terminated-result) */
        line[sl] = '\n';
        *len = sl + 1;
    }
    free(s);
    return ok ? 0 : -1;
}

void log_vmsg(int level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX], when[64];
    if (log_format == LOG_JSON) {
        char text[LOG_LINE_MAX];
        size_t len;
        (void)vsnprintf(text, sizeof(text), fmt, ap);
        if (format_json(line, sizeof(line), &len, level, text) == 0) {
            emit(level, line, len);
            return;
        }
        log_plain("%s", text);    /* a line too long for JSON: never lost */
        return;
    }
    format_time(when, sizeof(when));
    int n = snprintf(line, sizeof(line), "%s %s ", when, level_names[level]);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) len = sizeof(line) - 2;
    line[len++] = '\n';
    emit(level, line, len);
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

/* A "ferry: TEXT" line (or, with --log-format json, the JSON object of an
 * info line) into out; its length, newline included. */
static size_t plain_line(char *out, size_t cap, const char *text)
{
    size_t len;
    if (log_format == LOG_JSON && format_json(out, cap, &len, LOG_INFO, text) == 0) return len;
    int n = snprintf(out, cap - 1, "ferry: %s", text);
    len = n < 0 ? 0 : (size_t)n;
    if (len > cap - 2) len = cap - 2;
    out[len++] = '\n';
    return len;
}

void log_plain(const char *fmt, ...)
{
    char text[1024], line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    size_t len = plain_line(line, sizeof(line), text);
    log_flush();
    write_line(line, len);
}

/* Appended to, 0640 when created; an existing file keeps its mode
 * (logrotate's `create` sets it). */
static int open_log(const char *what, const char *path, char *err, size_t errlen)
{
    return wfile_open(what, path, O_APPEND, 0640, err, errlen);
}

int log_file_open(const char *path, char *err, size_t errlen)
{
    int fd = open_log("--log-file", path, err, errlen);
    if (fd < 0) return -1;
    log_flush();
    atomic_store_explicit(&log_fd, fd, memory_order_relaxed);
    return 0;
}

int log_file_reopen(const char *path, char *err, size_t errlen)
{
    int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
    if (fd == STDERR_FILENO) {
        snprintf(err, errlen, "no log file is open");
        return -1;
    }
    int nfd = open_log("cannot reopen", path, err, errlen);
    if (nfd < 0) return -1;
    /* dup3 closes the old file and installs the new one under the same
     * number in one step: a write() already running keeps its reference to
     * the old file and finishes there, every later one goes to the new
     * file, none fails with EBADF. dup2 would drop close-on-exec. */
    int r = dup3(nfd, fd, O_CLOEXEC);
    int e = errno;
    close(nfd);
    if (r < 0) {
        snprintf(err, errlen, "cannot reopen '%.200s': %s", path, strerror(e));
        return -1;
    }
    return 0;
}

void log_file_close(void)
{
    log_writer_stop();      /* whatever is still queued goes to the file first */
    int fd = atomic_exchange_explicit(&log_fd, STDERR_FILENO, memory_order_relaxed);
    if (fd != STDERR_FILENO) close(fd);
}
