/* loadgen helpers: clock, address parsing, fd limit, histogram, RSS. */
#include "lg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT". Returns 0 or -1. An empty
 * host is returned as "". */
int parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon, *hs = s;
    size_t hl;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return -1;
        hs = s + 1;
        hl = (size_t)(rb - hs);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl >= hostlen)
        return -1;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || !isdigit((unsigned char)colon[1]))
        return -1;
    *port = (uint16_t)p;
    return 0;
}

/* Resolves a host (literal or name; "" means 0.0.0.0) into a sockaddr. */
int resolve_addr(const char *host, uint16_t port,
                 struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *res = NULL;
    char ps[8];

    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(ps, sizeof ps, "%u", port);
    if (getaddrinfo(host[0] ? host : "0.0.0.0", ps, &hints, &res) != 0 || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft
 * limit or -1. */
int raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    return (int)rl.rlim_cur;
}

static int hist_index(uint64_t v)
{
    if (v < 64)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int idx = 64 + (msb - 6) * 32 + (int)((v >> (msb - 5)) - 32);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* Midpoint of a bucket, the value reported for a percentile. */
static uint64_t hist_value(int i)
{
    if (i < 64)
        return (uint64_t)i;
    int msb = (i - 64) / 32 + 6, sub = (i - 64) % 32;
    uint64_t width = 1ull << (msb - 5);
    return ((uint64_t)(32 + sub) << (msb - 5)) + width / 2;
}

void hist_add(struct hist *h, uint64_t us)
{
    h->b[hist_index(us)]++;
    h->n++;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (int i = 0; i < HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->n += src->n;
}

uint64_t hist_pct(const struct hist *h, double pct)
{
    if (h->n == 0)
        return 0;
    uint64_t want = (uint64_t)(pct / 100.0 * (double)h->n + 0.999999);
    uint64_t acc = 0;
    if (want < 1)
        want = 1;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        acc += h->b[i];
        if (acc >= want)
            return hist_value(i);
    }
    return hist_value(HIST_BUCKETS - 1);
}

/* Value in KiB of a "Key:   N kB" line in a /proc file, or -1. */
static long proc_kib(const char *path, const char *key)
{
    char line[256];
    size_t kl = strlen(key);
    long v = -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0) {
            v = strtol(line + kl, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

#define PROC_MAX 32768

/* Parent pid of a process from /proc/PID/stat, or -1. */
static int proc_ppid(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');   /* comm may contain spaces */
    int ppid;
    if (!rp || sscanf(rp + 1, " %*c %d", &ppid) != 1)
        return -1;
    return ppid;
}

/* Fills pid[]/ppid[] with every process in /proc; returns the count. */
static int proc_scan(int *pid, int *ppid, int max)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    if (!d)
        return 0;
    while (n < max && (de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid[n] = atoi(de->d_name);
        ppid[n] = proc_ppid(pid[n]);
        n++;
    }
    closedir(d);
    return n;
}

/* Adds pid and all its descendants to set[] (bounded by max). */
static int tree_collect(int root, const int *pid, const int *ppid, int n,
                        int *set, int nset, int max)
{
    int start = nset;
    if (nset < max)
        set[nset++] = root;
    for (int q = start; q < nset; q++)
        for (int i = 0; i < n && nset < max; i++)
            if (ppid[i] == set[q])
                set[nset++] = pid[i];
    return nset;
}

/* Sum of VmRSS (and Pss, from smaps_rollup) in KiB over the given pids and
 * all their descendants: nginx workers, danted children. -1 if none. */
long rss_tree_kib(const int *pids, int npids, long *pss_kib)
{
    int *pid = calloc(3 * PROC_MAX, sizeof(int));
    long rss = -1, pss = -1;
    char path[64];
    if (!pid)
        return -1;
    int *ppid = pid + PROC_MAX, *set = pid + 2 * PROC_MAX;
    int n = proc_scan(pid, ppid, PROC_MAX), nset = 0;

    for (int i = 0; i < npids; i++)
        nset = tree_collect(pids[i], pid, ppid, n, set, nset, PROC_MAX);
    for (int i = 0; i < nset; i++) {
        snprintf(path, sizeof path, "/proc/%d/status", set[i]);
        long r = proc_kib(path, "VmRSS:");
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", set[i]);
        long p = proc_kib(path, "Pss:");
        if (r >= 0)
            rss = (rss < 0 ? 0 : rss) + r;
        if (p >= 0)
            pss = (pss < 0 ? 0 : pss) + p;
    }
    free(pid);
    if (pss_kib)
        *pss_kib = pss;
    return rss;
}
