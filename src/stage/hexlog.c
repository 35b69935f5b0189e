/* hexlog.c - see hexlog.h. */
#include "stage/hexlog.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "obs/log.h"
#include "obs/metrics.h"
#include "stage/hexdump.h"
#include "stage/privfile.h"
#include "stage/spool.h"

#define HEXLOG_SPOOL_BYTES (4u << 20)
#define HEXLOG_CHUNK 16384          /* bytes per dump at most */

struct hexlog {
    char path[256];
    int fd;
    char *text;                     /* writer thread: HEXDUMP_BOUND(HEXLOG_CHUNK) */
    struct spool *sp;
    int write_failed;
};

static void write_all(struct hexlog *h, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(h->fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (!h->write_failed) log_error("hexdump '%s': write failed: %s", h->path, strerror(errno));
            h->write_failed = 1;
            return;
        }
        p += k;
        n -= (size_t)k;
    }
}

static void on_record(void *ctx, uint8_t *rec, size_t len)
{
    struct hexlog *h = ctx;
    struct hexdump_hdr hd;
    if (len < sizeof(hd)) return;
    memcpy(&hd, rec, sizeof(hd));
    size_t n = hexdump_format(h->text, &hd, rec + sizeof(hd), len - sizeof(hd));
    if (h->fd != STDERR_FILENO) {
        write_all(h, h->text, n);
        return;
    }
    /* stderr is shared with the log: writes of at most PIPE_BUF bytes, cut
     * at line ends, are not interleaved with a log line on a pipe. */
    for (const char *p = h->text; n;) {
        size_t k = n;
        if (k > PIPE_BUF) {
            k = PIPE_BUF;
            while (k > 1 && p[k - 1] != '\n') k--;
        }
        write_all(h, p, k);
        p += k;
        n -= k;
    }
}

static const struct spool_ops hexlog_spool_ops = { on_record, NULL, METRICS_TAP_HEXDUMP };

struct hexlog *hexlog_open(const char *path, char *err, size_t errlen)
{
    struct hexlog *h = calloc(1, sizeof(*h));
    char name[300];
    if (!h || !(h->text = malloc(HEXDUMP_BOUND(HEXLOG_CHUNK)))) {
        snprintf(err, errlen, "--hexdump: out of memory");
        goto fail;
    }
    h->fd = STDERR_FILENO;
    if (path && *path) {
        snprintf(h->path, sizeof(h->path), "%s", path);
        h->fd = privfile_open("--hexdump-file", path, 1, err, errlen);
        if (h->fd < 0) goto fail;
    }
    snprintf(name, sizeof(name), "hexdump '%s'", *h->path ? h->path : "stderr");
    if (!(h->sp = spool_new(HEXLOG_SPOOL_BYTES, &hexlog_spool_ops, h, name, err, errlen))) {
        if (h->fd != STDERR_FILENO) close(h->fd);
        goto fail;
    }
    return h;
fail:
    if (h) free(h->text);
    free(h);
    return NULL;
}


void hexlog_put(struct hexlog *h, int64_t ts_us, uint64_t sess_id, int up, uint64_t *offset, const void *p,
                size_t n)
{
    const uint8_t *b = p;
    do {
        size_t k = n < HEXLOG_CHUNK ? n : HEXLOG_CHUNK;
        struct hexdump_hdr hd = { ts_us, sess_id, up, *offset };
        struct spool_part parts[2] = { { &hd, sizeof(hd) }, { b, k } };
        spool_put(h->sp, parts, 2);
        *offset += k;
        b += k;
        n -= k;
    } while (n);
}

void hexlog_close(struct hexlog *h)
{
    if (!h) return;
    uint64_t dropped = spool_close(h->sp);
    if (dropped)
        log_warn("hexdump '%s': %llu dumps dropped (the output did not keep up)", *h->path ? h->path : "stderr",
                 (unsigned long long)dropped);
    if (h->fd != STDERR_FILENO) close(h->fd);
    free(h->text);
    free(h);
}
