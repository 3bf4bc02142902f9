/* Keeping a server endpoint registered with the local broker: the registration connection stays
 * open for as long as the record should live, and is made again whenever a broker appears. The
 * first attempt waits for its answer (so that a server knows at once whether it is listed); the
 * later ones run on the server's event loop and never hold it up, even when a broker accepts and
 * then does not answer. */
#include "broker.h"

#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_MS 250
#define REFUSED_MAX_MS 30000 /* a refused registration is tried again less and less often */
#define REGISTER_TIMEOUT_MS 1000

enum phase { IDLE, OPENING, SENDING, WAITING, REGISTERED };

struct rdb_announce {
    struct event_base *base;
    char sock_path[RDT_PIPE_MAX + 32];
    struct rdb_entry entry;
    void (*note)(const char *msg, void *arg);
    void *arg;
    struct rdt_conn *conn;
    enum phase phase;
    uint8_t *frame; /* the REGISTER frame, the same for every attempt */
    size_t frame_len, frame_off;
    struct rdb_reader rd;
    int64_t deadline;
    unsigned refused_ms; /* the wait after the broker's last refusal (0: none) */
    struct event *ev; /* the connection: the attempt's steps, then the watch for the broker's end */
    struct event *retry;
    bool said_absent;
};

static void schedule_retry(struct rdb_announce *a, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(a->retry, &tv);
}

static void drop_conn(struct rdb_announce *a)
{
    event_del(a->ev);
    rdt_conn_free(a->conn);
    a->conn = NULL;
    rdb_reader_free(&a->rd);
    a->phase = IDLE;
}

/* Dials the broker; the REGISTER frame goes from its start. */
static int begin(struct rdb_announce *a, char *err, size_t errlen)
{
    struct rdt_tstring ts = {.proto = RDT_NPIPE, .side = RDT_CLIENT};
    snprintf(ts.pipe, sizeof(ts.pipe), "%s", a->sock_path);
    snprintf(ts.server, sizeof(ts.server), "localhost");
    int rc = rdt_dial_start(&a->conn, &ts, RDT_ROLE_REQUESTER, err, errlen);
    if (rc)
        return rc;
    a->frame_off = 0;
    rdb_reader_init(&a->rd);
    a->deadline = rdt_now_ms() + REGISTER_TIMEOUT_MS;
    a->phase = OPENING;
    return 0;
}

/* Reads the broker's answer: 0 once REGISTERED came. */
static int read_reply(struct rdb_announce *a, char *err, size_t errlen)
{
    for (;;) {
        enum rdb_type type;
        json_t *reply = NULL;
        int rc = rdb_reader_next(&a->rd, &type, &reply, err, errlen);
        if (rc > 0 && type != RDB_REGISTERED) {
            const char *msg = "unexpected answer";
            json_unpack(reply, "{s:s}", "message", &msg);
            snprintf(err, errlen, "the broker refused the registration: %s", msg);
            rc = -EACCES;
        }
        json_decref(reply);
        if (rc)
            return rc > 0 ? 0 : rc;
        uint8_t buf[1024];
        size_t n = 0;
        if ((rc = rdt_conn_read(a->conn, buf, sizeof(buf), &n)) == 0 && n == 0)
            rc = -ECONNRESET, snprintf(err, errlen, "the broker closed the connection");
        else if (rc && rc != -EAGAIN)
            snprintf(err, errlen, "%s", rdt_conn_error(a->conn));
        if (rc == 0)
            rc = rdb_reader_feed(&a->rd, buf, n);
        if (rc)
            return rc;
    }
}

/* Takes the attempt as far as it goes without waiting: 0 when registered, -EAGAIN to wait for
 * the connection (the events of wait_events), else the reason in err. */
static int advance(struct rdb_announce *a, char *err, size_t errlen)
{
    int rc;
    if (a->phase == OPENING) {
        if ((rc = rdt_conn_open_step(a->conn)))
            return rc == -EAGAIN ? rc : (snprintf(err, errlen, "%s", rdt_conn_error(a->conn)), rc);
        a->phase = SENDING;
    }
    while (a->phase == SENDING && a->frame_off < a->frame_len) {
        size_t n = 0;
        if ((rc =
                 rdt_conn_write(a->conn, a->frame + a->frame_off, a->frame_len - a->frame_off, &n)))
            return rc == -EAGAIN ? rc : (snprintf(err, errlen, "%s", rdt_conn_error(a->conn)), rc);
        a->frame_off += n;
    }
    a->phase = WAITING;
    if ((rc = read_reply(a, err, errlen)) == 0)
        a->phase = REGISTERED;
    return rc;
}

static short wait_events(const struct rdb_announce *a)
{
    if (a->phase == SENDING)
        return POLLOUT; /* the rest of the frame */
    return a->phase == WAITING ? POLLIN : rdt_conn_events(a->conn);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdb_announce *a = arg;
    char buf[256];
    size_t n = 0;
    int rc = rdt_conn_read(a->conn, buf, sizeof(buf), &n);
    if (rc == -EAGAIN || (rc == 0 && n > 0))
        return; /* nothing the broker says after registration matters */
    drop_conn(a);
    schedule_retry(a, 0); /* a restarting broker: come back as soon as it answers */
}

/* The end of an attempt: watch the broker's end of a registration, or say why there is none and
 * try again later. */
static void finish(struct rdb_announce *a, int rc, const char *err)
{
    char msg[2 * RDT_ERR_MAX];
    if (rc) {
        drop_conn(a);
        if (!a->said_absent && a->note) {
            bool absent = strstr(err, "no server on pipe") != NULL;
            snprintf(msg, sizeof(msg),
                     "not discoverable: %s%s; serving anyway, and registering when a broker "
                     "starts",
                     absent ? "no broker answers on " : "", absent ? a->sock_path : err);
            a->note(msg, a->arg);
        }
        a->said_absent = true;
        if (rc == -EACCES) /* it may be a limit that lifts, or not: ask less often */
            a->refused_ms = a->refused_ms ? a->refused_ms * 2 : 1000;
        if (a->refused_ms > REFUSED_MAX_MS)
            a->refused_ms = REFUSED_MAX_MS;
        schedule_retry(a, rc == -EACCES ? a->refused_ms : RETRY_MS);
        return;
    }
    a->refused_ms = 0;
    event_assign(a->ev, a->base, rdt_conn_fd(a->conn), EV_READ | EV_PERSIST, watch_cb, a);
    event_add(a->ev, NULL);
    if (a->said_absent && a->note) {
        snprintf(msg, sizeof(msg), "registered with the broker on %s", a->sock_path);
        a->note(msg, a->arg);
        a->said_absent = false;
    }
}

static void step_cb(evutil_socket_t fd, short what, void *arg);

/* The later attempts: one step at a time on the loop, within REGISTER_TIMEOUT_MS. */
static void step(struct rdb_announce *a)
{
    char err[RDT_ERR_MAX] = "";
    int rc = advance(a, err, sizeof(err));
    int64_t left = a->deadline - rdt_now_ms();
    if (rc == -EAGAIN && left <= 0)
        rc = -ETIMEDOUT, snprintf(err, sizeof(err), "the broker did not answer in time");
    if (rc != -EAGAIN) {
        finish(a, rc, err);
        return;
    }
    struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
    event_del(a->ev);
    event_assign(a->ev, a->base, rdt_conn_fd(a->conn),
                 wait_events(a) & POLLOUT ? EV_WRITE : EV_READ, step_cb, a);
    event_add(a->ev, &tv);
}

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    step(arg); /* a timeout shows as the deadline passed */
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdb_announce *a = arg;
    char err[RDT_ERR_MAX] = "";
    int rc = begin(a, err, sizeof(err));
    if (rc)
        finish(a, rc, err);
    else
        step(a);
}

/* The first attempt, waited for. */
static void first_attempt(struct rdb_announce *a)
{
    char err[RDT_ERR_MAX] = "";
    int rc = begin(a, err, sizeof(err));
    while (rc == 0 && (rc = advance(a, err, sizeof(err))) == -EAGAIN) {
        int64_t left = a->deadline - rdt_now_ms();
        struct pollfd p = {.fd = rdt_conn_fd(a->conn), .events = wait_events(a)};
        if (left <= 0 || poll(&p, 1, (int)left) == 0)
            rc = -ETIMEDOUT, snprintf(err, sizeof(err), "the broker did not answer in time");
        else
            rc = 0;
    }
    finish(a, rc, err);
}

int rdb_announce_open(struct rdb_announce **out, struct event_base *base, const char *sock_path,
                      const struct rdb_entry *e, void (*note)(const char *msg, void *arg),
                      void *arg)
{
    *out = NULL;
    struct rdb_announce *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->base = base;
    snprintf(a->sock_path, sizeof(a->sock_path), "%s", sock_path ? sock_path : rdb_sock_path());
    a->entry = *e;
    for (char *c = a->entry.desc; *c; c++) /* what the broker takes */
        if (!rdb_printable_char(*c))
            *c = '?';
    a->note = note;
    a->arg = arg;
    json_t *body = json_pack("{s:s, s:s, s:b, s:b, s:s}", "kind", rdb_kind_name(a->entry.kind),
                             "advert", a->entry.advert, "hidden", a->entry.hidden, "clicon",
                             a->entry.clicon, "desc", a->entry.desc);
    if (body && a->entry.foreign) /* only then: rdq's own servers register as they always did */
        json_object_set_new(body, "foreign", json_true());
    a->frame = rdb_frame_encode(RDB_REGISTER, body, &a->frame_len);
    json_decref(body);
    a->retry = evtimer_new(base, retry_cb, a);
    a->ev = event_new(base, -1, 0, step_cb, a);
    if (!a->frame || !a->retry || !a->ev) {
        rdb_announce_free(a);
        return -ENOMEM;
    }
    first_attempt(a);
    *out = a;
    return 0;
}

void rdb_announce_free(struct rdb_announce *a)
{
    if (!a)
        return;
    if (a->ev) {
        drop_conn(a);
        event_free(a->ev);
    }
    if (a->retry)
        event_free(a->retry);
    free(a->frame);
    free(a);
}

bool rdb_announce_registered(const struct rdb_announce *a)
{
    return a->phase == REGISTERED;
}
