/* ss_libev_interop.c - one-off wire interop check of ferry's Shadowsocks AEAD
 * encoder/decoder against a real shadowsocks-libev (ss-server, ss-local).
 * Not part of the unit tests (they stay hermetic); run by
 * ss_libev_interop.sh, which starts the libev processes on 127.0.0.1.
 *
 * PASSWORD "key:BASE64" means a raw key, as ss-libev's --key takes it.
 *
 *   server METHOD PASSWORD SS_SERVER_PORT
 *       ferry encoder -> ss-server -> local echo server -> ss-server ->
 *       ferry decoder; the echoed bytes must equal what was sent.
 *   local METHOD PASSWORD FAKE_SERVER_PORT SS_LOCAL_PORT
 *       SOCKS5 client -> ss-local -> fake server (ferry decoder) must see
 *       [ATYP addr port] + payload; fake server (ferry encoder) -> ss-local
 *       -> SOCKS5 client must see the reply.
 *
 * Build: cc -std=gnu11 -D_GNU_SOURCE -Isrc -pthread -o /tmp/ssi \
 *   tests/unit/vectors/ss_libev_interop.c src/proto/ss_aead.c \
 *   src/crypto/ss_cipher.c src/crypto/replay.c -lcrypto
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "proto/ss_aead.h"

#define DIE(...) do { fprintf(stderr, "interop: " __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

static const struct ss_method *g_m;
static uint8_t g_key[SS_KEY_MAX];

static int listen_on(int port, int *bound)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4) != 0)
        DIE("listen %d", port);
    getsockname(fd, (struct sockaddr *)&a, &al);
    if (bound)
        *bound = ntohs(a.sin_port);
    return fd;
}

static int connect_to(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    for (int i = 0; i < 50; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fd;
        close(fd);
        usleep(100000);
    }
    DIE("connect %d", port);
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            DIE("send");
        p += w;
        n -= (size_t)w;
    }
}

static void recv_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            DIE("recv: short by %zu", n);
        p += r;
        n -= (size_t)r;
    }
}

/* Encrypt and send plain in pieces of `step` bytes (several chunk runs). */
static void enc_send(int fd, struct ss_enc *e, const uint8_t *plain, size_t n, size_t step)
{
    uint8_t *out = malloc(ss_enc_size(e, step) + 64);
    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        size_t w = ss_enc_write(e, plain + off, k, out, ss_enc_size(e, step) + 64);
        if (w == 0)
            DIE("encode");
        send_all(fd, out, w);
    }
    free(out);
}

/* Receive and decode exactly n plaintext bytes, reading at arbitrary sizes
 * and keeping unconsumed bytes at the front of a linear buffer. */
static void recv_dec(int fd, uint8_t *plain, size_t n)
{
    static uint8_t buf[SS_DEC_MAX_PENDING + 4096];
    struct ss_dec d;
    size_t have = 0, got = 0;

    ss_dec_init(&d, g_m, g_key);
    while (got < n) {
        ssize_t r = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (r <= 0)
            DIE("recv_dec: eof after %zu of %zu", got, n);
        have += (size_t)r;
        size_t c, pl;
        int rc = ss_dec_feed(&d, buf, have, &c, plain + got, n - got, &pl);
        if (rc == SS_DEC_ERROR)
            DIE("decode error after %zu bytes", got);
        got += pl;
        memmove(buf, buf + c, have - c);
        have -= c;
    }
    ss_dec_free(&d);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131 + seed + (i >> 9));
}

static void *echo_thread(void *arg)
{
    int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
    uint8_t b[8192];
    ssize_t r;
    while ((r = recv(fd, b, sizeof(b), 0)) > 0)
        send_all(fd, b, (size_t)r);
    close(fd);
    return NULL;
}

static void run_server(int ss_port)
{
    int eport, lfd = listen_on(0, &eport);
    pthread_t t;
    pthread_create(&t, NULL, echo_thread, &lfd);

    enum { N = 100000 };
    uint8_t *plain = malloc(7 + N), *back = malloc(N), salt[SS_SALT_MAX];
    plain[0] = 1;                                /* ATYP IPv4 127.0.0.1 */
    plain[1] = 127, plain[2] = 0, plain[3] = 0, plain[4] = 1;
    plain[5] = (uint8_t)(eport >> 8), plain[6] = (uint8_t)eport;
    fill(plain + 7, N, 1);
    RAND_bytes(salt, sizeof(salt));
    struct ss_enc e;
    if (ss_enc_init(&e, g_m, g_key, salt) != 0)
        DIE("enc init");
    int fd = connect_to(ss_port);
    enc_send(fd, &e, plain, 7 + N, 20000);
    recv_dec(fd, back, N);
    if (memcmp(back, plain + 7, N) != 0)
        DIE("echo mismatch");
    close(fd);
    pthread_join(t, NULL);
    ss_enc_free(&e);
    printf("server %s: OK, %d bytes each way through ss-server\n", g_m->name, N);
}

enum { LN = 50000, RN = 40000 };
static const uint8_t socks_req[] = { 5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l',
                                     'e', '.', 'c', 'o', 'm', 0x01, 0xbb };

/* Fake ss-server: decode what ss-local sends, answer RN bytes. */
static void *fake_server(void *arg)
{
    int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
    size_t hn = sizeof(socks_req) - 3;
    uint8_t *got = malloc(hn + LN), *want = malloc(hn + LN), *reply = malloc(RN);
    uint8_t salt[SS_SALT_MAX];

    memcpy(want, socks_req + 3, hn);             /* ATYP .. port */
    fill(want + hn, LN, 2);
    recv_dec(fd, got, hn + LN);
    if (memcmp(got, want, hn + LN) != 0)
        DIE("ss-local stream mismatch");
    RAND_bytes(salt, sizeof(salt));
    struct ss_enc e;
    ss_enc_init(&e, g_m, g_key, salt);
    fill(reply, RN, 3);
    enc_send(fd, &e, reply, RN, 7000);
    ss_enc_free(&e);
    sleep(1);
    close(fd);
    free(got), free(want), free(reply);
    return NULL;
}

static void run_local(int fake_port, int local_port)
{
    int lfd = listen_on(fake_port, NULL);
    pthread_t t;
    pthread_create(&t, NULL, fake_server, &lfd);

    uint8_t r[10], *data = malloc(LN), *back = malloc(RN), *want = malloc(RN);
    int fd = connect_to(local_port);
    send_all(fd, (const uint8_t *)"\x05\x01\x00", 3);
    recv_all(fd, r, 2);
    send_all(fd, socks_req, sizeof(socks_req));
    recv_all(fd, r, 10);
    if (r[1] != 0)
        DIE("socks reply %d", r[1]);
    fill(data, LN, 2);
    send_all(fd, data, LN);
    recv_all(fd, back, RN);
    fill(want, RN, 3);
    if (memcmp(back, want, RN) != 0)
        DIE("reply through ss-local mismatch");
    pthread_join(t, NULL);
    close(fd);
    printf("local %s: OK, ss-local's %d-byte stream decoded, %d-byte reply accepted\n",
           g_m->name, LN, RN);
}

int main(int argc, char **argv)
{
    if (argc < 5 || (g_m = ss_method_find(argv[2])) == NULL)
        DIE("usage: server|local METHOD PASSWORD PORT [PORT]");
    char err[128];
    if (strncmp(argv[3], "key:", 4) == 0) {  /* base64 key, as ss-libev --key */
        if (ss_key_from_base64(g_m, argv[3] + 4, g_key, err, sizeof(err)) != 0)
            DIE("%s", err);
    } else if (ss_key_from_password(g_m, argv[3], g_key) != 0) {
        DIE("key");
    }
    if (strcmp(argv[1], "server") == 0)
        run_server(atoi(argv[4]));
    else if (argc == 6)
        run_local(atoi(argv[4]), atoi(argv[5]));
    else
        DIE("bad mode");
    return 0;
}
