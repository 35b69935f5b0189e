/* front_mux.c - mux-server --dynamic: every stream starts with its target
 * in SOCKS5 address form (ATYP, address, port), as mux-local --socks (and a
 * Shadowsocks stream) sends it. The rest of the stream is payload.
 *
 * There is no reply: the stream's ACK is held until the target is
 * connected (endpoint_established), and a failure resets the stream, which
 * mux-local turns into the SOCKS client's failure reply.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/log.h"
#include "proto/socks5.h"
#include "relay/front.h"
#include "relay/session.h"

static int dyn_init(struct session *s)
{
    s->front_state = NULL;     /* set to the formatted target once parsed */
    return 0;
}

static enum front_result dyn_on_data(struct session *s, const uint8_t *buf, size_t len, size_t *used)
{
    struct socks_addr a;
    size_t n = 0;
    *used = 0;
    int r = socks5_parse_addr(buf, len, &a, &n);
    if (r == SOCKS_NEED_MORE) return FRONT_AGAIN;
    if (r == SOCKS_INVALID) {
        sess_fail_reason(s, END_BAD_ATYP);
        return FRONT_FAIL;
    }
    char host[SOCKS_ADDR_FMT_MAX], full[SOCKS_ADDR_FMT_MAX];
    socks_addr_host(&a, host, sizeof(host));
    socks_addr_format(&a, full, sizeof(full));
    *used = n;
    if (!(s->front_state = strdup(full)) || sess_set_target(s, host, a.port, 1) < 0) return FRONT_FAIL;
    return FRONT_CONNECT;
}

static void dyn_log_fields(const struct session *s, char *out, size_t outlen)
{
    char dest[SOCKS_ADDR_FMT_MAX];
    log_sanitize(dest, sizeof(dest), s->front_state ? s->front_state : "-");
    snprintf(out, outlen, "proto=mux dest=%s", dest);
}

static void dyn_free(struct session *s)
{
    free(s->front_state);
    s->front_state = NULL;
}

const struct front_ops front_mux_dynamic = {
    .name = "mux-dynamic",
    .init = dyn_init,
    .on_data = dyn_on_data,
    .log_fields = dyn_log_fields,
    .free = dyn_free,
};
