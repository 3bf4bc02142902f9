/* Reaching a pipe on another host through that host's broker (rdbroker -relay), on the caller's
 * loop: the broker is dialed as a requester, a relay layer on that connection asks for the pipe
 * as its opening (RELAY, then the RELAYED answer, read to its last byte and no further: the
 * pipe's stream follows it), and the pipe's own TLS and session layers go on top, one deadline
 * for all of it. The blocking rdd_relay_dial runs the same on a loop of its own. */
#include "discover.h"

#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The relay layer: its opening asks the broker for the pipe ---- */

struct relay_layer {
    uint8_t *frame; /* RELAY, until it is out */
    size_t frame_len, frame_off;
    struct rdb_reader rd;
    char err[RDT_ERR_MAX];
};

static int layer_fail(struct relay_layer *l, int rc, const char *msg)
{
    snprintf(l->err, sizeof(l->err), "%s", msg);
    return rc;
}

static int layer_send(struct rdt_conn *c, struct relay_layer *l)
{
    while (l->frame_off < l->frame_len) {
        size_t n = 0;
        int rc = rdt_conn_write(c->next, l->frame + l->frame_off, l->frame_len - l->frame_off, &n);
        if (rc)
            return rc == -EAGAIN ? rc : layer_fail(l, rc, rdt_conn_error(c->next));
        l->frame_off += n;
    }
    return 0;
}

/* The broker's answer: RELAYED and nothing after it, or its reason for refusing. */
static int layer_answer(struct relay_layer *l, enum rdb_type type, json_t *body)
{
    const char *msg = "unexpected answer";
    int rc = 0;
    if (type != RDB_RELAYED) {
        json_unpack(body, "{s:s}", "message", &msg);
        rc = layer_fail(l, -EPROTO, msg);
    } else if (l->rd.len) {
        rc = layer_fail(l, -EPROTO, "relay: the broker sent more than it should");
    }
    json_decref(body);
    return rc;
}

static int layer_recv(struct rdt_conn *c, struct relay_layer *l)
{
    for (;;) {
        enum rdb_type type;
        json_t *body = NULL;
        int rc = rdb_reader_next(&l->rd, &type, &body, l->err, sizeof(l->err));
        if (rc)
            return rc < 0 ? rc : layer_answer(l, type, body);
        uint8_t buf[4096];
        size_t n = 0, want = rdb_reader_missing(&l->rd); /* not a byte of the pipe's stream */
        rc = rdt_conn_read(c->next, buf, want < sizeof(buf) ? want : sizeof(buf), &n);
        if (rc)
            return rc == -EAGAIN ? rc : layer_fail(l, rc, rdt_conn_error(c->next));
        if (n == 0)
            return layer_fail(l, -ECONNRESET, "the connection closed before an answer came");
        if ((rc = rdb_reader_feed(&l->rd, buf, n)))
            return layer_fail(l, rc, "out of memory");
    }
}

static int layer_open(struct rdt_conn *c)
{
    struct relay_layer *l = c->ctx;
    int rc = rdt_conn_open_step(c->next);
    if (rc)
        return rc == -EAGAIN ? rc : layer_fail(l, rc, rdt_conn_error(c->next));
    rc = layer_send(c, l);
    return rc ? rc : layer_recv(c, l);
}

static void layer_close(struct rdt_conn *c)
{
    struct relay_layer *l = c->ctx;
    free(l->frame);
    rdb_reader_free(&l->rd);
    free(l);
}

static int layer_read(struct rdt_conn *c, void *buf, size_t len, size_t *nread)
{
    return rdt_conn_read(c->next, buf, len, nread);
}

static int layer_write(struct rdt_conn *c, const void *buf, size_t len, size_t *nwritten)
{
    return rdt_conn_write(c->next, buf, len, nwritten);
}

static short layer_events(struct rdt_conn *c)
{
    struct relay_layer *l = c->ctx;
    if (!c->next->ready || c->ready)
        return rdt_conn_events(c->next);
    return l->frame_off < l->frame_len ? POLLOUT : POLLIN;
}

static const char *layer_last_error(struct rdt_conn *c)
{
    struct relay_layer *l = c->ctx;
    return l->err[0] ? l->err : rdt_conn_error(c->next);
}

static const struct rdt_ops relay_ops = {
    .name = "relay",
    .open = layer_open,
    .close = layer_close,
    .read = layer_read,
    .write = layer_write,
    .events = layer_events,
    .last_error = layer_last_error,
};

/* Stacks the relay layer for pipe `name` on the broker's connection `next` (taken, even when
 * this fails: NULL). */
static struct rdt_conn *relay_conn(struct rdt_conn *next, const char *name)
{
    struct relay_layer *l = calloc(1, sizeof(*l));
    json_t *q = json_pack("{s:s}", "pipe", name);
    if (l && q)
        l->frame = rdb_frame_encode(RDB_RELAY, q, &l->frame_len);
    json_decref(q);
    struct rdt_conn *c = l && l->frame ? rdt_conn_push(&relay_ops, l, next) : NULL;
    if (!c) {
        if (l)
            free(l->frame);
        free(l);
        rdt_conn_free(next);
        return NULL;
    }
    rdb_reader_init(&l->rd);
    return c;
}

/* ---- The dial ---- */

struct rdd_relay {
    struct event_base *base;
    struct rdt_tstring ts; /* the pipe's */
    char password[RDT_PASSWORD_MAX + 1];
    char broker[RDT_HOST_MAX + 32]; /* "the broker at HOST:PORT", for messages */
    int timeout_ms;
    int64_t deadline;
    rdt_dial_cb cb;
    void *arg;
    struct rdt_dialer *dialer; /* the broker's connection, then the pipe's layers */
};

void rdd_relay_free(struct rdd_relay *r)
{
    if (!r)
        return;
    rdt_dialer_free(r->dialer);
    explicit_bzero(r->password, sizeof(r->password));
    explicit_bzero(r->ts.password, sizeof(r->ts.password));
    free(r);
}

static int relay_errf(const struct rdt_tstring *ts, int rc, const char *why, char *err,
                      size_t errlen)
{
    snprintf(err, errlen, "%s: pipe %s on %s: %s", ts->proto == RDT_SPIPE ? "spipe" : "npipe",
             ts->pipe, ts->server, why);
    return rc;
}

/* Calls back once, then frees. */
static void finish(struct rdd_relay *r, struct rdt_conn *conn, int rc, const char *why)
{
    char err[RDT_ERR_MAX];
    if (rc)
        relay_errf(&r->ts, rc, why, err, sizeof(err));
    r->cb(conn, rc, rc ? err : NULL, r->arg);
    rdd_relay_free(r);
}

static void pipe_cb(struct rdt_conn *conn, int rc, const char *err, void *arg)
{
    struct rdd_relay *r = arg;
    r->dialer = NULL;
    finish(r, conn, rc, err);
}

/* The broker took the connection: the relay layer, then the pipe's layers, go on top. */
static void broker_cb(struct rdt_conn *conn, int rc, const char *err, void *arg)
{
    struct rdd_relay *r = arg;
    char why[RDT_ERR_MAX];
    r->dialer = NULL;
    if (rc) {
        finish(r, NULL, rc, err);
        return;
    }
    struct rdt_conn *c = relay_conn(conn, r->ts.pipe);
    rc = c ? rdt_dial_over(&r->dialer, r->base, c, r->broker, &r->ts,
                           r->password[0] ? r->password : NULL, RDT_ROLE_CLIENT, r->timeout_ms,
                           r->deadline, pipe_cb, r, why, sizeof(why))
           : -ENOMEM;
    if (rc)
        finish(r, NULL, rc, c ? why : "out of memory");
}

int rdd_relay_dial_async(struct rdd_relay **out, struct event_base *base, struct rdt_resolver *res,
                         const struct rdt_tstring *ts, const char *password, uint16_t port,
                         int timeout_ms, rdt_dial_cb cb, void *arg, char *err, size_t errlen)
{
    *out = NULL;
    struct rdd_relay *r = calloc(1, sizeof(*r));
    if (!r)
        return relay_errf(ts, -ENOMEM, "out of memory", err, errlen);
    *r = (struct rdd_relay){.base = base,
                            .ts = *ts,
                            .timeout_ms = timeout_ms,
                            .deadline = rdt_now_ms() + timeout_ms,
                            .cb = cb,
                            .arg = arg};
    snprintf(r->password, sizeof(r->password), "%s", password ? password : "");
    struct rdt_tstring broker = {.proto = RDT_TCP, .side = RDT_CLIENT};
    broker.port_lo = broker.port_hi = rdd_broker_port(port);
    rdd_host_clean(ts->server, broker.server, sizeof(broker.server));
    snprintf(r->broker, sizeof(r->broker), "the broker at %s:%u", broker.server, broker.port_lo);
    char why[RDT_ERR_MAX];
    int rc = rdt_dial_async(&r->dialer, base, res, &broker, NULL, RDT_ROLE_REQUESTER, timeout_ms,
                            r->deadline, broker_cb, r, why, sizeof(why));
    if (rc) {
        relay_errf(ts, rc, why, err, errlen);
        rdd_relay_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* ---- Waiting for it ---- */

struct relay_args {
    const struct rdt_tstring *ts;
    const char *password;
    uint16_t port;
    int timeout_ms;
    struct rdd_relay *r;
};

static int args_start(void *arg, struct event_base *base, struct rdt_resolver *res, rdt_dial_cb cb,
                      void *cb_arg, char *err, size_t errlen)
{
    struct relay_args *a = arg;
    return rdd_relay_dial_async(&a->r, base, res, a->ts, a->password, a->port, a->timeout_ms, cb,
                                cb_arg, err, errlen);
}

static void args_cancel(void *arg)
{
    struct relay_args *a = arg;
    rdd_relay_free(a->r);
}

int rdd_relay_dial(struct rdt_conn **out, const struct rdt_tstring *ts, const char *password,
                   uint16_t port, int timeout_ms, char *err, size_t errlen)
{
    static const struct rdt_dial_run_ops ops = {.start = args_start, .cancel = args_cancel};
    struct relay_args a = {.ts = ts, .password = password, .port = port, .timeout_ms = timeout_ms};
    return rdt_dial_run(out, &ops, &a, err, errlen);
}
