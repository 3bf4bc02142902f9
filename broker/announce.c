/* Keeping a server endpoint registered with the local broker: the registration connection stays
 * open for as long as the record should live, and is made again whenever a broker appears. */
#include "broker.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_MS 250
#define REGISTER_TIMEOUT_MS 1000

struct rdb_announce {
    struct event_base *base;
    char sock_path[RDT_PIPE_MAX + 32];
    struct rdb_entry entry;
    void (*note)(const char *msg, void *arg);
    void *arg;
    struct rdt_conn *conn;
    struct event *watch; /* the registration connection: readable means the broker is gone */
    struct event *retry;
    bool registered;
    bool said_absent;
};

static void schedule_retry(struct rdb_announce *a, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(a->retry, &tv);
}

static void drop_conn(struct rdb_announce *a)
{
    if (a->watch)
        event_free(a->watch);
    a->watch = NULL;
    rdt_conn_free(a->conn);
    a->conn = NULL;
    a->registered = false;
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

/* Registers over a new connection; 0 on success, else the reason in err. */
static int try_register(struct rdb_announce *a, char *err, size_t errlen)
{
    struct rdt_tstring ts = {.proto = RDT_NPIPE, .side = RDT_CLIENT};
    snprintf(ts.pipe, sizeof(ts.pipe), "%s", a->sock_path);
    snprintf(ts.server, sizeof(ts.server), "localhost");
    int rc = rdt_dial_requester(&a->conn, &ts, REGISTER_TIMEOUT_MS, err, errlen);
    if (rc)
        return rc;
    json_t *body = json_pack("{s:s, s:s, s:b, s:b, s:s}", "kind", rdb_kind_name(a->entry.kind),
                             "advert", a->entry.advert, "hidden", a->entry.hidden, "clicon",
                             a->entry.clicon, "desc", a->entry.desc);
    rc = rdb_send(a->conn, RDB_REGISTER, body, REGISTER_TIMEOUT_MS);
    json_decref(body);
    struct rdb_reader rd;
    rdb_reader_init(&rd);
    enum rdb_type type;
    json_t *reply = NULL;
    if (rc == 0)
        rc = rdb_recv(a->conn, &rd, &type, &reply, REGISTER_TIMEOUT_MS, err, errlen);
    if (rc == 0 && type != RDB_REGISTERED) {
        const char *msg = "unexpected answer";
        json_unpack(reply, "{s:s}", "message", &msg);
        snprintf(err, errlen, "the broker refused the registration: %s", msg);
        rc = -EPROTO;
    }
    json_decref(reply);
    rdb_reader_free(&rd);
    if (rc)
        drop_conn(a);
    return rc;
}

static void attempt(struct rdb_announce *a)
{
    char err[RDT_ERR_MAX], msg[2 * RDT_ERR_MAX];
    if (try_register(a, err, sizeof(err)) != 0) {
        if (!a->said_absent && a->note) {
            snprintf(msg, sizeof(msg),
                     "not discoverable: %s%s; serving anyway, and registering when a broker "
                     "starts",
                     strstr(err, "no server on pipe") ? "no broker answers on " : "",
                     strstr(err, "no server on pipe") ? a->sock_path : err);
            a->note(msg, a->arg);
        }
        a->said_absent = true;
        schedule_retry(a, RETRY_MS);
        return;
    }
    a->watch = event_new(a->base, a->conn->fd, EV_READ | EV_PERSIST, watch_cb, a);
    event_add(a->watch, NULL);
    a->registered = true;
    if (a->said_absent && a->note) {
        snprintf(msg, sizeof(msg), "registered with the broker on %s", a->sock_path);
        a->note(msg, a->arg);
        a->said_absent = false;
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    attempt(arg);
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
    a->note = note;
    a->arg = arg;
    a->retry = evtimer_new(base, retry_cb, a);
    if (!a->retry) {
        free(a);
        return -ENOMEM;
    }
    attempt(a);
    *out = a;
    return 0;
}

void rdb_announce_free(struct rdb_announce *a)
{
    if (!a)
        return;
    drop_conn(a);
    event_free(a->retry);
    free(a);
}

bool rdb_announce_registered(const struct rdb_announce *a)
{
    return a->registered;
}
