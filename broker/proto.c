/* The broker's wire protocol: frames of an 8-byte header and a JSON body (docs/protocol.md). */
#include "broker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const kind_names[RDB_KIND_COUNT] = {"debugger", "process", "kd"};
static const char *const kind_titles[RDB_KIND_COUNT] = {"Debugger Server", "Remote Process Server",
                                                        "Remote Kernel Debugger Server"};
static const char *const filter_names[] = {"all", "debugger", "remote"};

const char *rdb_kind_name(enum rdb_kind k)
{
    return (unsigned)k < RDB_KIND_COUNT ? kind_names[k] : "unknown";
}

const char *rdb_kind_title(enum rdb_kind k)
{
    return (unsigned)k < RDB_KIND_COUNT ? kind_titles[k] : "Unknown Server";
}

int rdb_kind_parse(const char *s, enum rdb_kind *out)
{
    for (int k = 0; k < RDB_KIND_COUNT; k++)
        if (s && strcasecmp(s, kind_names[k]) == 0) {
            *out = (enum rdb_kind)k;
            return 0;
        }
    return -EINVAL;
}

const char *rdb_filter_name(enum rdb_filter f)
{
    return (unsigned)f < 3 ? filter_names[f] : "unknown";
}

int rdb_filter_parse(const char *s, enum rdb_filter *out)
{
    for (int f = 0; f < 3; f++)
        if (s && strcasecmp(s, filter_names[f]) == 0) {
            *out = (enum rdb_filter)f;
            return 0;
        }
    return -EINVAL;
}

bool rdb_filter_match(enum rdb_filter f, enum rdb_kind k)
{
    if (f == RDB_FILTER_DEBUGGER)
        return k == RDB_DEBUGGER;
    if (f == RDB_FILTER_REMOTE)
        return k == RDB_PROCESS || k == RDB_KD;
    return true;
}

/* A frame being written by jansson's dump: the header's room first, then the body. */
struct frame_buf {
    uint8_t *buf;
    size_t len, cap;
};

static int frame_put(const char *data, size_t size, void *arg)
{
    struct frame_buf *f = arg;
    if (f->len + size > RDB_HDR_LEN + RDB_FRAME_MAX)
        return -1;
    if (f->len + size > f->cap) {
        size_t cap = f->cap * 2;
        while (cap < f->len + size)
            cap *= 2;
        uint8_t *nb = realloc(f->buf, cap);
        if (!nb)
            return -1;
        f->buf = nb;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, data, size);
    f->len += size;
    return 0;
}

uint8_t *rdb_frame_encode(enum rdb_type type, const json_t *body, size_t *len)
{
    struct frame_buf f = {.buf = malloc(1024), .len = RDB_HDR_LEN, .cap = 1024};
    if (!f.buf || json_dump_callback(body, frame_put, &f, JSON_COMPACT) != 0 ||
        f.len == RDB_HDR_LEN) {
        free(f.buf);
        return NULL;
    }
    size_t n = f.len - RDB_HDR_LEN;
    uint8_t *buf = f.buf;
    buf[0] = 'R';
    buf[1] = 'B';
    buf[2] = RDB_VERSION;
    buf[3] = (uint8_t)type;
    buf[4] = (uint8_t)(n >> 24);
    buf[5] = (uint8_t)(n >> 16);
    buf[6] = (uint8_t)(n >> 8);
    buf[7] = (uint8_t)n;
    *len = f.len;
    return buf;
}

void rdb_reader_init(struct rdb_reader *r)
{
    memset(r, 0, sizeof(*r));
}

void rdb_reader_free(struct rdb_reader *r)
{
    free(r->buf);
    rdb_reader_init(r);
}

int rdb_reader_feed(struct rdb_reader *r, const void *data, size_t len)
{
    if (r->len + len > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + len)
            cap *= 2;
        uint8_t *nb = realloc(r->buf, cap);
        if (!nb)
            return -ENOMEM;
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    return 0;
}

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EPROTO;
}

/* The body length a header gives (bytes 4 to 7, big-endian). */
static size_t body_len(const uint8_t *h)
{
    return (size_t)h[4] << 24 | (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
}

/* Checks the header at the start of the buffer; returns the body length or -EPROTO. */
static long check_header(const uint8_t *h, char *err, size_t errlen)
{
    if (h[0] != 'R' || h[1] != 'B')
        return bad(err, errlen, "bad frame: not an rdq broker message (bytes 0x%02x 0x%02x)", h[0],
                   h[1]);
    if (h[2] != RDB_VERSION)
        return bad(err, errlen,
                   "The client is not using same version of remoting protocol as the server "
                   "(message version %u, broker version %u)",
                   h[2], RDB_VERSION);
    size_t n = body_len(h);
    if (n > RDB_FRAME_MAX)
        return bad(err, errlen, "bad frame: a body of %u bytes is over the limit of %u",
                   (unsigned)n, RDB_FRAME_MAX);
    if (h[3] < RDB_REGISTER || h[3] > RDB_RELAYED)
        return bad(err, errlen, "bad frame: unknown message type %u", h[3]);
    return (long)n;
}

int rdb_reader_next(struct rdb_reader *r, enum rdb_type *type, json_t **body, char *err,
                    size_t errlen)
{
    *body = NULL;
    if (r->len < RDB_HDR_LEN)
        return 0;
    long n = check_header(r->buf, err, errlen);
    if (n < 0)
        return (int)n;
    if (r->len < RDB_HDR_LEN + (size_t)n)
        return 0;
    json_error_t je;
    *type = (enum rdb_type)r->buf[3];
    *body = json_loadb((const char *)r->buf + RDB_HDR_LEN, (size_t)n, 0, &je);
    r->len -= RDB_HDR_LEN + (size_t)n;
    memmove(r->buf, r->buf + RDB_HDR_LEN + n, r->len);
    if (!*body || !json_is_object(*body)) {
        json_decref(*body);
        *body = NULL;
        snprintf(err, errlen, "bad frame: the body is not a JSON object%s%s", *je.text ? ": " : "",
                 je.text);
        return -EPROTO;
    }
    return 1;
}

int rdb_send(struct rdt_conn *c, enum rdb_type type, const json_t *body, int timeout_ms)
{
    size_t len;
    uint8_t *buf = rdb_frame_encode(type, body, &len);
    if (!buf)
        return -EMSGSIZE;
    int rc = rdt_conn_write_all(c, buf, len, timeout_ms);
    free(buf);
    return rc;
}

size_t rdb_reader_missing(const struct rdb_reader *r)
{
    if (r->len < RDB_HDR_LEN)
        return RDB_HDR_LEN - r->len;
    size_t n = body_len(r->buf);
    return n <= RDB_FRAME_MAX && r->len < RDB_HDR_LEN + n ? RDB_HDR_LEN + n - r->len : 0;
}

static int recv_frame(struct rdt_conn *c, struct rdb_reader *r, enum rdb_type *type, json_t **body,
                      int timeout_ms, bool exact, char *err, size_t errlen)
{
    for (;;) {
        int rc = rdb_reader_next(r, type, body, err, errlen);
        if (rc != 0)
            return rc < 0 ? rc : 0;
        uint8_t buf[16384];
        size_t n = 0, want = exact ? rdb_reader_missing(r) : sizeof(buf);
        rc = rdt_conn_read_wait(c, buf, want < sizeof(buf) ? want : sizeof(buf), &n, timeout_ms);
        if (rc == -ETIMEDOUT)
            snprintf(err, errlen, "no answer in time");
        else if (rc)
            snprintf(err, errlen, "%s", rdt_conn_error(c));
        else if (n == 0)
            snprintf(err, errlen, "the connection closed before an answer came");
        if (rc)
            return rc;
        if (n == 0)
            return -ECONNRESET;
        if ((rc = rdb_reader_feed(r, buf, n)))
            return rc;
    }
}

int rdb_recv(struct rdt_conn *c, struct rdb_reader *r, enum rdb_type *type, json_t **body,
             int timeout_ms, char *err, size_t errlen)
{
    return recv_frame(c, r, type, body, timeout_ms, false, err, errlen);
}

int rdb_recv_exact(struct rdt_conn *c, struct rdb_reader *r, enum rdb_type *type, json_t **body,
                   int timeout_ms, char *err, size_t errlen)
{
    return recv_frame(c, r, type, body, timeout_ms, true, err, errlen);
}

bool rdb_printable(const char *s)
{
    for (; *s; s++)
        if (!rdb_printable_char(*s))
            return false;
    return true;
}

const char *rdb_sock_path(void)
{
    const char *p = getenv("RDQ_BROKER_SOCK");
    return p && p[0] ? p : RDB_DEFAULT_SOCK;
}

void rdb_logf(void (*log)(int prio, const char *msg, void *arg), void *arg, int prio,
              const char *fmt, ...)
{
    if (!log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log(prio, msg, arg);
}
