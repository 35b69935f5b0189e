/* ferry_client.c - ferry's yamux codec (proto/yamux.c) as a client of the Go
 * reference peer's echo server: the cross check that both read spec.md the
 * same way. Not part of ferry; built by tests/integration/test_yamux_peer.py:
 *   cc -Isrc tests/yamux_peer/c/ferry_client.c build/libferry.a
 *   (its own folder: Go refuses C files beside a non-cgo package)
 *   ./a.out PORT STREAMS BYTES
 * Opens STREAMS streams at once on 127.0.0.1:PORT, sends BYTES of a
 * per-stream pattern on each, half-closes, and checks that exactly the same
 * bytes come back before the server's FIN. Exit 0 and "ok" on success.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/yamux.h"

#define MAXS 64
/* Kept free by fill() for the window updates and ping answers that reading
 * produces: a built window update is already counted as granted, so it
 * must always find room. */
#define RESERVE 4096

struct st { uint32_t id; size_t sent, got; int fin_sent, fin_got; };

static struct yamux_conn c;
static struct st ss[MAXS];
static int nstreams;
static size_t nbytes;
static uint8_t out[1 << 20];
static size_t outlen;

static uint8_t pattern(uint32_t id, size_t i)
{
    return (uint8_t)(id * 31 + i * 7 + (i >> 11));
}

static void die(const char *what)
{
    fprintf(stderr, "ferry_client: %s\n", what);
    exit(1);
}

static struct st *find(uint32_t id)
{
    for (int i = 0; i < nstreams; i++)
        if (ss[i].id == id)
            return &ss[i];
    die("event for a stream we did not open");
    return NULL;
}

/* Queues data (as far as windows and the buffer allow) and FINs. */
static void fill(void)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    uint32_t n;

    for (int i = 0; i < nstreams; i++) {
        struct st *s = &ss[i];
        size_t room = outlen + RESERVE < sizeof out ? sizeof out - RESERVE - outlen : 0;

        if (s->sent < nbytes && room > YAMUX_HEADER_SIZE
            && yamux_build_data(&c, s->id, nbytes - s->sent < room - YAMUX_HEADER_SIZE
                                ? nbytes - s->sent : room - YAMUX_HEADER_SIZE, hdr, &n) == YAMUX_OK) {
            memcpy(out + outlen, hdr, sizeof hdr);
            outlen += sizeof hdr;
            for (uint32_t k = 0; k < n; k++)
                out[outlen++] = pattern(s->id, s->sent++);
        }
        if (s->sent == nbytes && !s->fin_sent && sizeof out - outlen >= YAMUX_HEADER_SIZE) {
            if (yamux_build_fin(&c, s->id, out + outlen) != YAMUX_OK)
                die("build_fin");
            outlen += YAMUX_HEADER_SIZE;
            s->fin_sent = 1;
        }
    }
}

static void on_event(const struct yamux_event *ev)
{
    uint8_t hdr[YAMUX_HEADER_SIZE];
    struct st *s;
    int rc;

    switch (ev->type) {
    case YAMUX_EV_DATA:
        s = find(ev->id);
        for (size_t k = 0; k < ev->len; k++)
            if (s->got >= nbytes || ev->data[k] != pattern(s->id, s->got++))
                die("echo differs from what was sent");
        rc = yamux_build_window_update(&c, ev->id, (uint32_t)ev->len, hdr);
        if (rc == YAMUX_OK && sizeof out - outlen >= sizeof hdr) {
            memcpy(out + outlen, hdr, sizeof hdr);
            outlen += sizeof hdr;
        } else if (rc == YAMUX_OK || (rc < 0 && rc != YAMUX_E_NOSTREAM)) {
            die("window update");
        }
        return;
    case YAMUX_EV_FIN:
        find(ev->id)->fin_got = 1;
        return;
    case YAMUX_EV_ACKED:
    case YAMUX_EV_WINDOW:
        return;
    case YAMUX_EV_PING:
        if (!ev->ack && sizeof out - outlen >= YAMUX_HEADER_SIZE) {
            yamux_build_ping(out + outlen, ev->value, 1);
            outlen += YAMUX_HEADER_SIZE;
        }
        return;
    case YAMUX_EV_ERROR:
        fprintf(stderr, "ferry_client: protocol error: %s\n", ev->reason);
        exit(1);
    default:
        fprintf(stderr, "ferry_client: unexpected event %d on %u\n", ev->type, ev->id);
        exit(1);
    }
}

static int done(void)
{
    for (int i = 0; i < nstreams; i++)
        if (!ss[i].fin_got || ss[i].got != nbytes)
            return 0;
    return 1;
}

static void on_readable(int fd)
{
    static uint8_t in[65536];
    struct yamux_event ev;
    ssize_t r = read(fd, in, sizeof in);
    size_t off = 0, used;

    if (r == 0)
        die("server closed the connection");
    if (r < 0)
        die(strerror(errno));
    while (yamux_feed(&c, in + off, (size_t)r - off, &ev, &used) != YAMUX_EV_NONE) {
        off += used;
        on_event(&ev);
    }
}

static int dial(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

int main(int argc, char **argv)
{
    int fd;

    if (argc != 4 || (nstreams = atoi(argv[2])) < 1 || nstreams > MAXS)
        die("usage: ferry_client PORT STREAMS(1-64) BYTES");
    nbytes = strtoul(argv[3], NULL, 10);
    fd = dial(atoi(argv[1]));
    if (yamux_conn_init(&c, YAMUX_CLIENT, 0) < 0)
        die("init");
    for (int i = 0; i < nstreams; i++) {
        if (yamux_open_stream(&c, &ss[i].id, out + outlen) != YAMUX_OK)
            die("open");
        outlen += YAMUX_HEADER_SIZE;
    }
    while (!done()) {
        struct pollfd p = { fd, POLLIN | POLLOUT, 0 };

        fill();
        p.events = (short)(POLLIN | (outlen ? POLLOUT : 0));
        if (poll(&p, 1, 10000) <= 0)
            die("stalled for 10 s");
        if (p.revents & POLLIN)
            on_readable(fd);
        if ((p.revents & POLLOUT) && outlen) {
            ssize_t w = write(fd, out, outlen);

            if (w < 0 && errno != EAGAIN)
                die(strerror(errno));
            if (w > 0) {
                memmove(out, out + w, outlen - (size_t)w);
                outlen -= (size_t)w;
            }
        }
    }
    printf("ok: %d streams x %zu bytes echoed through ferry's yamux codec\n", nstreams, nbytes);
    yamux_conn_free(&c);
    close(fd);
    return 0;
}
