/* server.c - see server.h. */
#include "api/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/http.h"
#include "config/cli.h"
#include "core/loop.h"
#include "net/sock.h"
#include "obs/log.h"
#include "obs/metrics.h"

#define READ_CHUNK 16384

struct api_conn {
    struct api_conn *prev, *next;
    struct api_server *srv;
    struct loop_io io;
    struct loop_timer idle;
    struct api_req req;
    char *out;                 /* response being written */
    size_t out_len, out_off;
    int close_after;
    int metrics_only;          /* came in on --metrics' socket */
    struct net_addr local;     /* where the client connected (len 0: unknown) */
    size_t in_len;             /* bytes in `in` not yet fed to the parser */
    char in[READ_CHUNK];
};

/* A listening socket: the API's or the metrics'. */
struct api_lsock {
    struct api_server *srv;
    struct loop_io io;
    int fd;
    int metrics_only;
};

struct api_server {
    struct loop *loop;
    pthread_t thread;
    struct api_lsock ls[2];    /* API, metrics (fd -1: none) */
    const struct api_backend *b;
    struct api_conn *conns;
    unsigned nconns;
    int stopping;              /* atomic */
};

/* Every change the API made is logged (an audit trail of who broke what
 * with a toxic); reads only at debug. */
static void log_request(const struct api_req *q, int status)
{
    int change = strcmp(q->method, "GET") != 0 && strcmp(q->method, "HEAD") != 0 && status >= 200 && status < 300;
    if (!log_enabled(change ? LOG_INFO : LOG_DEBUG)) return;
    char url[200], method[16];
    log_sanitize(url, sizeof(url), q->url ? q->url : "/");
    log_sanitize(method, sizeof(method), q->method);
    log_msg(change ? LOG_INFO : LOG_DEBUG, "api: %s %s -> %d", method, url, status);
}

static void conn_close(struct api_conn *c)
{
    struct api_server *s = c->srv;
    loop_timer_cancel(s->loop, &c->idle);
    loop_io_close(s->loop, &c->io);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->nconns--;
    api_req_free(&c->req);
    free(c->out);
    c->out = NULL;
    loop_defer_free(s->loop, c, free);
}

/* Status line, headers and body in one buffer, sent with one send(). */
static int queue_response(struct api_conn *c, const struct api_response *r)
{
    char head[256];
    int keep = !c->close_after;
    /* JSON ends with "\n", as toxiproxy ends its bodies; text is sent as made. */
    size_t body = r->status == 204 ? 0 : r->len + !r->content_type;
    int n = r->status == 204
        ? snprintf(head, sizeof(head), "HTTP/1.1 204 No Content\r\n%s\r\n", keep ? "" : "Connection: close\r\n")
        : snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                   r->status, api_status_text(r->status), r->content_type ? r->content_type : "application/json",
                   body, keep ? "" : "Connection: close\r\n");
    c->out = malloc((size_t)n + body);
    if (!c->out) return -1;
    memcpy(c->out, head, (size_t)n);
    if (body) {
        memcpy(c->out + n, r->body ? r->body : "", r->len);
        if (!r->content_type) c->out[(size_t)n + r->len] = '\n';
    }
    c->out_len = (size_t)n + body;
    c->out_off = 0;
    return 0;
}

/* GET /metrics (any query string): the exposition text, or NULL for
 * another request. */
static int is_metrics(const struct api_req *q)
{
    const char *u = q->url ? q->url : "/";
    size_t n = strcspn(u, "?");
    return (strcmp(q->method, "GET") == 0) && n == 8 && strncmp(u, "/metrics", 8) == 0;
}

static void answer_metrics(struct api_response *r)
{
    struct metrics_out o;
    if (metrics_render(&o, FERRY_VERSION) < 0) {
        api_error(r, 500, "out of memory");
        return;
    }
    memset(r, 0, sizeof(*r));
    r->status = 200;
    r->body = o.buf;
    r->len = o.len;
    r->content_type = METRICS_CONTENT_TYPE;
}

static void answer(struct api_conn *c)
{
    struct api_response r = { 0 };
    struct api_req *q = &c->req;
    const char *why;
    if (q->error_status) {
        c->close_after = 1;
        api_error(&r, q->error_status, q->error_status == 413 ? "request body too large"
                                     : q->error_status == 431 ? "request headers too large" : "bad request");
    } else if ((why = api_req_refusal(q, &c->local))) {
        log_info("api: request refused (403): %s", why);
        api_error(&r, 403, why);
    } else if (is_metrics(q)) {
        answer_metrics(&r);
    } else if (c->metrics_only) {
        api_error(&r, 404, "not found: only GET /metrics here");
    } else {
        api_route(c->srv->b, q->method, q->url ? q->url : "/", q->body, q->body_len, &r);
        log_request(q, r.status);
    }
    if (!q->keep_alive) c->close_after = 1;
    if (queue_response(c, &r) < 0) c->close_after = 1;
    api_response_free(&r);
}

/* 1: all written; 0: the socket is full; -1: error. */
static int flush_out(struct api_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->io.fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN ? 0 : -1;
        }
        c->out_off += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    return 1;
}

/* Feeds buffered bytes and answers complete requests, one at a time: the
 * next request is parsed only once the previous answer is written. */
static void process(struct api_conn *c, int eof)
{
    struct loop *l = c->srv->loop;
    while (!c->out) {
        size_t used;
        if (c->in_len == 0 && !eof) {
            loop_io_want(l, &c->io, LOOP_READ);
            return;
        }
        /* With nothing buffered, a 0-length feed tells the parser EOF. */
        enum api_req_state st = api_req_feed(&c->req, c->in, c->in_len, &used);
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        if (st == API_REQ_MORE) continue;
        if (st == API_REQ_ERROR && eof && c->req.head_bytes == 0) break;   /* EOF between requests */
        answer(c);
        int r = c->out ? flush_out(c) : -1;
        if (r < 0) break;
        if (r == 0) {
            loop_io_want(l, &c->io, LOOP_WRITE);
            return;
        }
        if (c->close_after) break;
        api_req_reset(&c->req);
    }
    conn_close(c);
}

static void conn_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct api_conn *c = io->owner;
    loop_timer_arm_in(l, &c->idle, API_IDLE_MS);
    if (c->out) {                              /* writing an answer */
        int r = flush_out(c);
        if (r < 0 || (r == 1 && c->close_after)) {
            conn_close(c);
            return;
        }
        if (r == 0) return;
        api_req_reset(&c->req);
        process(c, 0);
        return;
    }
    if (c->in_len == sizeof(c->in)) {           /* cannot happen: the parser takes all it is given */
        conn_close(c);
        return;
    }
    ssize_t n = recv(io->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    process(c, n == 0);
    (void)events;
}

static void idle_cb(struct loop *l, struct loop_timer *t)
{
    (void)l;
    conn_close(t->owner);
}

/* The address a client reached: with the API on a wildcard address, the
 * one interface IP its Host may name (api_req_refusal). */
static void local_addr(int fd, struct net_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    memset(a, 0, sizeof(*a));
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) net_addr_from_sockaddr(a, (struct sockaddr *)&ss, len);
}

static void accept_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct api_lsock *ls = io->owner;
    struct api_server *s = ls->srv;
    (void)events;
    for (int i = 0; i < 16; i++) {
        /* cppcheck-suppress nullPointer ; accept4 takes NULL when the peer address is not wanted */
        int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        struct api_conn *c = s->nconns < API_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            close(fd);
            continue;
        }
        c->srv = s;
        c->metrics_only = ls->metrics_only;
        c->io.fd = -1;
        local_addr(fd, &c->local);
        api_req_init(&c->req);
        loop_timer_init(&c->idle, idle_cb, c);
        if (loop_io_add(l, &c->io, fd, LOOP_READ, conn_cb, c) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        loop_timer_arm_in(l, &c->idle, API_IDLE_MS);
    }
}

static void wake_hook(struct loop *l, void *arg)
{
    struct api_server *s = arg;
    if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) loop_stop(l);
}

static void *server_main(void *arg)
{
    struct api_server *s = arg;
    if (loop_run(s->loop) < 0) log_error("api: event loop failed: %s", strerror(errno));
    return NULL;
}

int api_server_listen(const struct net_addr *addr, char *err, size_t errlen)
{
    return sock_listen(addr, 0, 64, err, errlen);
}

struct api_server *api_server_start(int lfd, const struct api_backend *b, int metrics_fd, char *err,
                                    size_t errlen)
{
    struct api_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        if (lfd >= 0) close(lfd);
        if (metrics_fd >= 0) close(metrics_fd);
        return NULL;
    }
    s->b = b;
    s->ls[0].fd = lfd;
    s->ls[1].fd = metrics_fd;
    for (int i = 0; i < 2; i++) {
        s->ls[i].srv = s;
        s->ls[i].io.fd = -1;
        s->ls[i].metrics_only = i == 1;
    }
    if (!(s->loop = loop_new())) {
        snprintf(err, errlen, "api: cannot create event loop: %s", strerror(errno));
        goto fail;
    }
    loop_set_wake_hook(s->loop, wake_hook, s);
    for (int i = 0; i < 2; i++) {
        if (s->ls[i].fd >= 0 && loop_io_add(s->loop, &s->ls[i].io, s->ls[i].fd, LOOP_READ, accept_cb, &s->ls[i]) < 0) {
            snprintf(err, errlen, "api: epoll: %s", strerror(errno));
            goto fail;
        }
    }
    int e = pthread_create(&s->thread, NULL, server_main, s);
    if (e) {
        snprintf(err, errlen, "api: cannot start thread: %s", strerror(e));
        goto fail;
    }
    return s;
fail:
    for (int i = 0; i < 2; i++) {
        if (s->loop && s->ls[i].io.fd >= 0) loop_io_del(s->loop, &s->ls[i].io);
        if (s->ls[i].fd >= 0) close(s->ls[i].fd);
    }
    if (s->loop) loop_free(s->loop);
    free(s);
    return NULL;
}

void api_server_stop(struct api_server *s)
{
    if (!s) return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    loop_wake(s->loop);
    pthread_join(s->thread, NULL);
    while (s->conns) conn_close(s->conns);
    for (int i = 0; i < 2; i++) {
        if (s->ls[i].fd < 0) continue;
        loop_io_del(s->loop, &s->ls[i].io);
        close(s->ls[i].fd);
    }
    loop_free(s->loop);     /* runs the deferred frees */
    free(s);
}
