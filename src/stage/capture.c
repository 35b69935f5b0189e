/* capture.c - see capture.h. */
#include "stage/capture.h"

#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "obs/log.h"
#include "obs/metrics.h"
#include "stage/pcap_tcp.h"
#include "stage/privfile.h"
#include "stage/spool.h"

/* Each of the spool's two buffers. At a few hundred MB/s of relayed
 * traffic this is tens of milliseconds of disk stall absorbed before
 * records are dropped. */
#define CAPTURE_SPOOL_BYTES (8u << 20)

struct capture {
    char path[256];
    uint64_t rotate;
    unsigned fileno;
    pcap_t *dead;                 /* the "handle" the dump API needs */
    pcap_dumper_t *d;             /* NULL after a failed rotation */
    struct spool *sp;
    /* Writer thread. A packet is "written" once a flush that follows it
     * succeeded: before that it sits in stdio's buffer, and a failed write
     * may have taken any part of it. */
    uint64_t packets;             /* handed to stdio */
    uint64_t written;             /* of those, flushed to the file */
    uint64_t lost;                /* not written: the capture had stopped */
    char stop_why[160];           /* why it stopped; "" while it runs */
    int stopped;                  /* set once by the writer, read by workers (__atomic) */
    uint64_t skipped;             /* workers (__atomic): not even queued once stopped */
};

/* What precedes each packet in the spool. */
struct cap_rec {
    int64_t ts_us;
};

void capture_file_name(const char *path, unsigned i, char *out, size_t outlen)
{
    if (i == 0) {
        snprintf(out, outlen, "%s", path);
        return;
    }
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    /* An extension is a dot in the last path component, not its first
     * character ("dir/.pcap" has none). */
    if (!dot || dot == path || (slash && dot <= slash + 1))
        snprintf(out, outlen, "%s.%u", path, i);
    else
        snprintf(out, outlen, "%.*s.%u%s", (int)(dot - path), path, i, dot);
}

/* "-" is stdout, as libpcap has it; any other name through privfile_open
 * (no symlink followed, mode 0600), rotated files included. */
static pcap_dumper_t *open_file(struct capture *c, const char *name, char *err, size_t errlen)
{
    pcap_dumper_t *d;
    if (strcmp(name, "-") == 0) {
        /* Binary on a terminal garbles it and helps nobody. */
        if (isatty(STDOUT_FILENO)) {
            snprintf(err, errlen, "--capture -: stdout is a terminal; pipe it into a reader "
                     "(ferry ... --capture - | tshark -i -) or name a file");
            return NULL;
        }
        d = pcap_dump_open(c->dead, name);
    } else {
        int fd = privfile_open("--capture", name, 0, err, errlen);
        if (fd < 0) return NULL;
        FILE *f = fdopen(fd, "w");
        if (!f) {
            snprintf(err, errlen, "--capture '%.200s': %s", name, strerror(errno));
            close(fd);
            return NULL;
        }
        d = pcap_dump_fopen(c->dead, f);
        if (!d) fclose(f);
    }
    if (!d) snprintf(err, errlen, "--capture '%.200s': %s", name, pcap_geterr(c->dead));
    return d;
}

/* Writer thread, once: a write failed (the reader of "-" left, the disk
 * is full) or the next file cannot be opened. Nothing more goes to the
 * file: a partly written packet has already made it unreadable from there
 * on. What stdio still held is counted as not written. The dumper stays
 * open until capture_close (closing it would close stdout for "-"). */
static void stop(struct capture *c, const char *why)
{
    snprintf(c->stop_why, sizeof(c->stop_why), "%s", why);
    log_error("capture '%s': %s; capture stopped", c->path, why);
    c->lost += c->packets - c->written;
    c->packets = c->written;
    __atomic_store_n(&c->stopped, 1, __ATOMIC_RELAXED);
}

static int running(const struct capture *c) { return c->d && !c->stop_why[0]; }

static void write_failed(struct capture *c, int err)
{
    char why[128];
    snprintf(why, sizeof(why), "write failed: %s", strerror(err ? err : EIO));
    stop(c, why);
}

/* 0, or -1 when the capture stopped. */
static int flush(struct capture *c)
{
    if (pcap_dump_flush(c->d) < 0) {
        write_failed(c, errno);
        return -1;
    }
    c->written = c->packets;
    return 0;
}

static void rotate(struct capture *c)
{
    char name[300], err[512];
    if (flush(c) < 0) return;
    pcap_dump_close(c->d);
    capture_file_name(c->path, ++c->fileno, name, sizeof(name));
    c->d = open_file(c, name, err, sizeof(err));
    if (!c->d) stop(c, err);
}

static void on_record(void *ctx, uint8_t *rec, size_t len)
{
    struct capture *c = ctx;
    struct cap_rec r;
    if (!running(c) || len < sizeof(r)) {
        c->lost++;
        return;
    }
    memcpy(&r, rec, sizeof(r));
    uint8_t *pkt = rec + sizeof(r);
    size_t plen = len - sizeof(r);
    ptcp_checksum_fill(pkt, plen);
    struct pcap_pkthdr h;
    h.ts.tv_sec = (time_t)(r.ts_us / 1000000);
    h.ts.tv_usec = (suseconds_t)(r.ts_us % 1000000);
    h.caplen = h.len = (bpf_u_int32)plen;
    errno = 0;
    pcap_dump((u_char *)c->d, &h, pkt);
    c->packets++;
    /* pcap_dump() says nothing: stdio's error flag tells whether the
     * write it made when its buffer filled failed. */
    if (ferror(pcap_dump_file(c->d))) {
        write_failed(c, errno);
        return;
    }
    if (c->rotate && (uint64_t)pcap_dump_ftell64(c->d) >= c->rotate) rotate(c);
}

static void on_batch_done(void *ctx)
{
    struct capture *c = ctx;
    if (running(c)) flush(c);
}

static const struct spool_ops capture_spool_ops = { on_record, on_batch_done, METRICS_TAP_PCAP };

struct capture *capture_open(const char *path, uint64_t rotate_bytes, char *err, size_t errlen)
{
    struct capture *c = calloc(1, sizeof(*c));
    char name[300];
    if (!c) {
        snprintf(err, errlen, "--capture '%.200s': out of memory", path);
        return NULL;
    }
    snprintf(c->path, sizeof(c->path), "%s", path);
    c->rotate = rotate_bytes;
    /* DLT_RAW is written as LINKTYPE_RAW: each packet starts with its IP
     * header, version 4 or 6. */
    c->dead = pcap_open_dead(DLT_RAW, 65535);
    if (!c->dead) {
        snprintf(err, errlen, "--capture '%.200s': pcap_open_dead failed", path);
        free(c);
        return NULL;
    }
    if (!(c->d = open_file(c, path, err, errlen))) goto fail;
    snprintf(name, sizeof(name), "capture '%s'", path);
    if (!(c->sp = spool_new(CAPTURE_SPOOL_BYTES, &capture_spool_ops, c, name, err, errlen))) {
        pcap_dump_close(c->d);
        goto fail;
    }
    return c;
fail:
    pcap_close(c->dead);
    free(c);
    return NULL;
}


int capture_put(struct capture *c, int64_t ts_us, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                size_t n)
{
    /* A stopped capture costs a load, not a copy into the spool. */
    if (__atomic_load_n(&c->stopped, __ATOMIC_RELAXED)) {
        __atomic_fetch_add(&c->skipped, 1, __ATOMIC_RELAXED);
        return -1;
    }
    struct cap_rec r = { ts_us };
    struct spool_part parts[3] = { { &r, sizeof(r) }, { hdr, hlen }, { payload, n } };
    return spool_put(c->sp, parts, 3);
}

void capture_count_drop(struct capture *c) { spool_count_drop(c->sp); }

void capture_close(struct capture *c)
{
    if (!c) return;
    uint64_t dropped = spool_close(c->sp);
    if (running(c)) flush(c);
    if (c->d) pcap_dump_close(c->d);
    pcap_close(c->dead);
    uint64_t lost = c->lost + __atomic_load_n(&c->skipped, __ATOMIC_RELAXED);
    char files[32], drops[80] = "";
    snprintf(files, sizeof(files), "%u file%s", c->fileno + 1, c->fileno ? "s" : "");
    if (dropped)
        snprintf(drops, sizeof(drops), ", %llu dropped (the disk did not keep up)", (unsigned long long)dropped);
    if (c->stop_why[0])
        log_warn("capture '%s': %llu packets written in %s, then %llu not written (capture stopped)%s", c->path,
                 (unsigned long long)c->written, files, (unsigned long long)lost, drops);
    else if (dropped)
        log_warn("capture '%s': %llu packets written in %s%s", c->path, (unsigned long long)c->written, files, drops);
    else
        log_info("capture '%s': %llu packets written in %s", c->path, (unsigned long long)c->written, files);
    free(c);
}
