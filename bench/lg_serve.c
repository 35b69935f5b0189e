/* loadgen upstream servers: echo, sink (discard), source (endless stream),
 * and udp-echo (every datagram back to where it came from).
 *
 *   loadgen serve echo|sink|source|udp-echo -l HOST:PORT [-t THREADS] [-D SECONDS]
 *
 * One epoll loop per thread, each with its own SO_REUSEPORT listener (for
 * udp-echo, its own SO_REUSEPORT UDP socket).
 * Memory is bounded: an echo connection holds a pending buffer only when
 * the client does not read fast enough, and then stops reading until it is
 * flushed (at most LG_SCRATCH bytes per connection). udp-echo holds nothing:
 * a batch it cannot send back at once is dropped (and counted). */
#include "lg.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define IO_ROUNDS 8     /* syscalls per event: one busy conn cannot starve */
#define ACCEPT_MAX 64   /* accepts per listener wakeup */
#define UDP_BATCH 32    /* datagrams per recvmmsg / sendmmsg */
#define UDP_BUF   2048  /* per datagram: loadgen's are at most 1.4 KB */
_Static_assert(UDP_BATCH * UDP_BUF <= LG_SCRATCH, "udp-echo batch fits the scratch buffer");

enum smode { SV_ECHO, SV_SINK, SV_SOURCE, SV_UDP_ECHO };

struct sconn {
    int fd;
    uint32_t plen, poff;    /* echo: pending bytes not yet written back */
    uint8_t *pend;
};

struct sworker {
    int mode, lfd, ep;
    uint8_t *scratch;
    uint64_t until;
    uint64_t echoed, dropped;   /* udp-echo */
    pthread_t th;
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void sc_close(struct sconn *c)
{
    close(c->fd);
    free(c->pend);
    free(c);
}

static void sc_interest(struct sworker *w, struct sconn *c, uint32_t ev)
{
    struct epoll_event e = { .events = ev, .data.ptr = c };
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Echo readable: read and write straight back; keep what the kernel did
 * not take and stop reading until it is flushed. Returns -1 if closed. */
static int echo_in(struct sworker *w, struct sconn *c)
{
    for (int r = 0; r < IO_ROUNDS; r++) {
        ssize_t k = recv(c->fd, w->scratch, LG_SCRATCH, 0);
        if (k < 0 && errno == EAGAIN)
            return 0;
        if (k <= 0)
            return -1;
        ssize_t s = send(c->fd, w->scratch, (size_t)k, MSG_NOSIGNAL);
        if (s < 0 && errno != EAGAIN)
            return -1;
        if (s < 0)
            s = 0;
        if (s < k) {
            c->pend = malloc((size_t)(k - s));
            if (!c->pend)
                return -1;
            memcpy(c->pend, w->scratch + s, (size_t)(k - s));
            c->plen = (uint32_t)(k - s);
            c->poff = 0;
            sc_interest(w, c, EPOLLOUT);
            return 0;
        }
    }
    return 0;
}

static int echo_out(struct sworker *w, struct sconn *c)
{
    while (c->poff < c->plen) {
        ssize_t s = send(c->fd, c->pend + c->poff, c->plen - c->poff, MSG_NOSIGNAL);
        if (s < 0 && errno == EAGAIN)
            return 0;
        if (s <= 0)
            return -1;
        c->poff += (uint32_t)s;
    }
    free(c->pend);
    c->pend = NULL;
    c->plen = c->poff = 0;
    sc_interest(w, c, EPOLLIN);
    return 0;
}

/* Sink reads and discards; source also discards whatever it is sent. */
static int drain_in(struct sworker *w, struct sconn *c)
{
    for (int r = 0; r < IO_ROUNDS; r++) {
        ssize_t k = recv(c->fd, w->scratch, LG_SCRATCH, 0);
        if (k < 0 && errno == EAGAIN)
            return 0;
        if (k <= 0)
            return -1;
    }
    return 0;
}

static int source_out(struct sworker *w, struct sconn *c)
{
    for (int r = 0; r < IO_ROUNDS; r++) {
        ssize_t s = send(c->fd, w->scratch, LG_SCRATCH, MSG_NOSIGNAL);
        if (s < 0 && errno == EAGAIN)
            return 0;
        if (s <= 0)
            return -1;
    }
    return 0;
}

static void accept_some(struct sworker *w)
{
    int one = 1;
    for (int i = 0; i < ACCEPT_MAX; i++) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                struct timespec ts = { 0, 1000000 };   /* don't spin */
                nanosleep(&ts, NULL);
            }
            return;
        }
        struct sconn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event e = { .data.ptr = c };
        e.events = w->mode == SV_SOURCE ? EPOLLIN | EPOLLOUT : EPOLLIN;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &e) < 0)
            sc_close(c);
    }
}

static void sc_event(struct sworker *w, struct sconn *c, uint32_t ev)
{
    int r = 0;
    if (w->mode == SV_ECHO)
        r = c->pend ? echo_out(w, c) : echo_in(w, c);
    else if (w->mode == SV_SOURCE && (ev & EPOLLOUT))
        r = source_out(w, c);
    if (r == 0 && w->mode != SV_ECHO && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        r = drain_in(w, c);
    if (r < 0)
        sc_close(c);
}

/* udp-echo readable: batches of datagrams straight back to their senders;
 * what the socket will not take now is dropped (UDP may lose it anyway). */
static void udp_echo(struct sworker *w)
{
    struct mmsghdr m[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    struct sockaddr_storage from[UDP_BATCH];

    for (int r = 0; r < IO_ROUNDS; r++) {
        for (int i = 0; i < UDP_BATCH; i++) {
            iov[i].iov_base = w->scratch + (size_t)i * UDP_BUF;
            iov[i].iov_len = UDP_BUF;
            memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
            m[i].msg_hdr.msg_name = &from[i];
            m[i].msg_hdr.msg_namelen = sizeof from[i];
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(w->lfd, m, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++)
            iov[i].iov_len = m[i].msg_len;   /* send back what came */
        int off = 0;
        while (off < n) {
            int s = sendmmsg(w->lfd, m + off, (unsigned)(n - off), MSG_DONTWAIT);
            if (s <= 0) {
                w->dropped += (uint64_t)(n - off);
                break;
            }
            w->echoed += (uint64_t)s;
            off += s;
        }
        if (n < UDP_BATCH)
            return;
    }
}

static void *serve_loop(void *arg)
{
    struct sworker *w = arg;
    struct epoll_event ev[256];

    while (!g_stop && now_ns() < w->until) {
        int k = epoll_wait(w->ep, ev, 256, 200);
        for (int i = 0; i < k; i++) {
            if (ev[i].data.ptr == NULL && w->mode == SV_UDP_ECHO)
                udp_echo(w);
            else if (ev[i].data.ptr == NULL)
                accept_some(w);
            else
                sc_event(w, ev[i].data.ptr, ev[i].events);
        }
    }
    return NULL;
}

/* Binds a SO_REUSEPORT listener; on port 0 writes back the chosen port. */
static int listen_on(struct sockaddr_storage *ss, socklen_t len)
{
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)ss, len) < 0 || listen(fd, 4096) < 0 ||
        getsockname(fd, (struct sockaddr *)ss, &len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The same for udp-echo: a SO_REUSEPORT UDP socket with large buffers
 * (SO_RCVBUFFORCE when root, so that a burst from many associations is
 * not lost here rather than in the proxy). */
static int udp_bind(struct sockaddr_storage *ss, socklen_t len)
{
    int one = 1, big = 8 * 1024 * 1024;
    int fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (bind(fd, (struct sockaddr *)ss, len) < 0 ||
        getsockname(fd, (struct sockaddr *)ss, &len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int sworker_init(struct sworker *w, int mode, struct sockaddr_storage *ss,
                        socklen_t len, uint64_t until)
{
    memset(w, 0, sizeof *w);
    w->mode = mode;
    w->until = until;
    w->lfd = mode == SV_UDP_ECHO ? udp_bind(ss, len) : listen_on(ss, len);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->scratch = malloc(LG_SCRATCH);   /* udp-echo: UDP_BATCH x UDP_BUF fit */
    if (w->lfd < 0 || w->ep < 0 || !w->scratch)
        return -1;
    memset(w->scratch, 's', LG_SCRATCH);
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
    return epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &e);
}

static void serve_usage(void)
{
    fprintf(stderr, "usage: loadgen serve echo|sink|source|udp-echo -l HOST:PORT "
                    "[-t THREADS] [-D SECONDS (default 3600)]\n");
}

static int serve_args(int argc, char **argv, int *mode, char *host,
                      uint16_t *port, int *threads, double *dur)
{
    static const struct option lo[] = { { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    int ch, have_l = 0;
    if (argc < 2)
        return -1;
    if (!strcmp(argv[1], "echo")) *mode = SV_ECHO;
    else if (!strcmp(argv[1], "sink")) *mode = SV_SINK;
    else if (!strcmp(argv[1], "source")) *mode = SV_SOURCE;
    else if (!strcmp(argv[1], "udp-echo")) *mode = SV_UDP_ECHO;
    else return -1;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "l:t:D:h", lo, NULL)) != -1) {
        if (ch == 'l') {
            if (parse_hostport(optarg, host, 256, port) < 0)
                return -1;
            have_l = 1;
        } else if (ch == 't') {
            *threads = atoi(optarg);
        } else if (ch == 'D') {
            *dur = atof(optarg);
        } else {
            return -1;
        }
    }
    return have_l && *threads >= 1 && *threads <= LG_MAX_THREADS && *dur > 0 ? 0 : -1;
}

int serve_main(int argc, char **argv)
{
    char host[256];
    uint16_t port = 0;
    int mode = 0, threads = 1;
    double dur = 3600;
    struct sockaddr_storage ss;
    socklen_t len;
    static struct sworker w[LG_MAX_THREADS];

    if (serve_args(argc, argv, &mode, host, &port, &threads, &dur) < 0) {
        serve_usage();
        return 2;
    }
    if (resolve_addr(host, port, &ss, &len) < 0) {
        fprintf(stderr, "loadgen serve: cannot resolve '%s'\n", host);
        return 2;
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    uint64_t until = now_ns() + (uint64_t)(dur * 1e9);
    for (int i = 0; i < threads; i++) {
        if (sworker_init(&w[i], mode, &ss, len, until) < 0) {
            fprintf(stderr, "loadgen serve: cannot listen on %s:%u: %s\n",
                    host, port, strerror(errno));
            return 1;
        }
    }
    printf("READY serve %s port=%u threads=%d\n", argv[1],
           ntohs(((struct sockaddr_in *)&ss)->sin_port), threads);
    fflush(stdout);
    for (int i = 1; i < threads; i++)
        pthread_create(&w[i].th, NULL, serve_loop, &w[i]);
    serve_loop(&w[0]);
    for (int i = 1; i < threads; i++)
        pthread_join(w[i].th, NULL);
    if (mode == SV_UDP_ECHO) {
        uint64_t e = 0, d = 0;
        for (int i = 0; i < threads; i++) {
            e += w[i].echoed;
            d += w[i].dropped;
        }
        printf("udp-echo: %llu datagrams echoed, %llu dropped (send would block)\n",
               (unsigned long long)e, (unsigned long long)d);
    }
    return 0;
}
