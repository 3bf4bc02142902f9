/* Dialing on the caller's event loop: the name through c-ares, a non-blocking connect to each
 * address in turn (or a connection the caller opened, its own opening still to complete), then
 * the TLS and session layers, one deadline for all of it (clicon: the name, then a port listened
 * on until the server connects, then the layers). Many dialers share one loop (and one
 * resolver): a client that asks many hosts waits for the slowest, not for the sum. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* OPENING: a stack given by the caller completes its own opening (rdt_dial_over); AWAITING:
 * clicon, the server's host has yet to connect to the port listened on */
enum stage { RESOLVING, CONNECTING, OPENING, AWAITING, HANDSHAKE };

struct rdt_dialer {
    struct event_base *base;
    struct rdt_tstring ts;
    char password[RDT_PASSWORD_MAX + 1];
    enum rdt_role role;
    int timeout_ms;
    rdt_dial_cb cb;
    void *arg;
    enum stage stage;
    struct rdt_lookup *lookup;
    struct rdt_addrs addrs;
    int next_addr;
    struct rdt_conn *c;
    struct event *io, *timer, *soon;
    char what[RDT_HOST_MAX + 64]; /* HOST:PORT of the address being tried, or the given peer */
    uint16_t listened;            /* clicon: the port the server is to connect to */
    char err[RDT_ERR_MAX];        /* why the last address failed */
    int rc;
    int64_t until; /* the deadline: each address but the last gets its share of the time left */
};

void rdt_dialer_free(struct rdt_dialer *d)
{
    if (!d)
        return;
    rdt_lookup_cancel(d->lookup);
    rdt_conn_free(d->c);
    if (d->io)
        event_free(d->io);
    if (d->timer)
        event_free(d->timer);
    if (d->soon)
        event_free(d->soon);
    explicit_bzero(d->password, sizeof(d->password));
    explicit_bzero(d->ts.password, sizeof(d->ts.password));
    free(d);
}

/* Calls back once, then frees: the connection to the caller, or the failure. */
static void finish(struct rdt_dialer *d, int rc, const char *err)
{
    struct rdt_conn *c = rc ? NULL : d->c;
    if (!rc)
        d->c = NULL;
    d->cb(c, rc, rc ? err : NULL, d->arg);
    rdt_dialer_free(d);
}

static void io_cb(evutil_socket_t fd, short what, void *arg);

/* Waits for what the stack's top layer asks for (or goes on at once for bytes it holds). */
static void wait_for(struct rdt_dialer *d)
{
    if (rdt_conn_pending(d->c)) {
        event_active(d->soon, EV_TIMEOUT, 0);
        return;
    }
    short want = rdt_conn_events(d->c);
    short ev =
        (short)(((want & POLLOUT) ? EV_WRITE : 0) | ((want & POLLIN) || !want ? EV_READ : 0));
    if (d->io)
        event_free(d->io);
    d->io = event_new(d->base, rdt_conn_fd(d->c), ev, io_cb, d);
    /* connecting while other addresses wait: this one has its share, so that one that drops
     * the connection silently does not use up the others' time */
    int others = d->stage == CONNECTING ? d->addrs.n - d->next_addr : 0;
    int64_t share = others ? (d->until - rdt_now_ms()) / (others + 1) : 0;
    struct timeval tv = {(time_t)(share / 1000), (suseconds_t)(share % 1000) * 1000};
    if (!d->io || event_add(d->io, share > 0 ? &tv : NULL) != 0)
        finish(d, -ENOMEM, "out of memory");
}

static void try_next(struct rdt_dialer *d);

static void handshake_step(struct rdt_dialer *d)
{
    int rc = rdt_conn_open_step(d->c);
    if (rc == -EAGAIN) {
        wait_for(d);
    } else if (rc) {
        char err[RDT_ERR_MAX];
        snprintf(err, sizeof(err), "%s", rdt_conn_error(d->c));
        finish(d, rc, err);
    } else {
        finish(d, 0, NULL);
    }
}

/* The socket is connected: the TLS and session layers go on top (a Foreign server's stream
 * starts with its own bytes: no session layer). */
static void layers_start(struct rdt_dialer *d)
{
    char err[RDT_ERR_MAX];
    int rc = rdt_tls_wrap(&d->c, &d->ts, err, sizeof(err));
    if (rc) {
        finish(d, rc, err);
        return;
    }
    d->c = rdt_client_session(d->c, &d->ts, d->role, d->password);
    if (!d->c) {
        finish(d, -ENOMEM, "out of memory");
        return;
    }
    d->stage = HANDSHAKE;
    handshake_step(d);
}

static void connect_step(struct rdt_dialer *d)
{
    int rc = rdt_conn_open_step(d->c);
    if (rc == -EAGAIN) {
        wait_for(d);
        return;
    }
    if (rc) {
        d->rc = rc;
        snprintf(d->err, sizeof(d->err), "%s", rdt_conn_error(d->c));
        rdt_conn_free(d->c);
        d->c = NULL;
        try_next(d);
        return;
    }
    layers_start(d);
}

/* The dial goes on from where it is. */
static void step(struct rdt_dialer *d)
{
    if (d->stage == HANDSHAKE)
        handshake_step(d);
    else
        connect_step(d);
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct rdt_dialer *d = arg;
    if (d->stage == CONNECTING && (what & EV_TIMEOUT)) { /* its share is up: the next one */
        d->rc = -ETIMEDOUT;
        snprintf(d->err, sizeof(d->err), "tcp: no answer from %s", d->what);
        rdt_conn_free(d->c);
        d->c = NULL;
        try_next(d);
        return;
    }
    step(d);
}

int rdt_sockaddr_of(const char *addr, uint16_t port, struct sockaddr_storage *sa, socklen_t *len)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
    memset(sa, 0, sizeof(*sa));
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *len = sizeof(*a6);
        return 0;
    }
    /* with a zone (fe80::1%eth0): its interface as the scope */
    struct addrinfo hints = {.ai_family = AF_INET6, .ai_flags = AI_NUMERICHOST}, *ai = NULL;
    if (!strchr(addr, '%') || getaddrinfo(addr, NULL, &hints, &ai) != 0)
        return -EINVAL;
    memcpy(a6, ai->ai_addr, sizeof(*a6));
    freeaddrinfo(ai);
    a6->sin6_port = htons(port);
    *len = sizeof(*a6);
    return 0;
}

/* Connects to the next address, or fails with the last address's reason. */
static void try_next(struct rdt_dialer *d)
{
    while (d->next_addr < d->addrs.n) {
        const char *addr = d->addrs.addr[d->next_addr++];
        struct sockaddr_storage sa;
        socklen_t len;
        int fd = -1, rc = rdt_sockaddr_of(addr, d->ts.port_lo, &sa, &len);
        if (rc == 0)
            rc = rdt_sock_connect_start((struct sockaddr *)&sa, len, &fd);
        if (rc && rc != -EINPROGRESS) {
            if (fd >= 0)
                close(fd);
            d->rc = rc;
            snprintf(d->err, sizeof(d->err), "tcp: cannot connect to %s: %s", d->what,
                     strerror(-rc));
            continue;
        }
        d->c = rdt_sock_connecting(&rdt_tcp_ops, fd, d->what);
        if (!d->c) {
            close(fd);
            finish(d, -ENOMEM, "out of memory");
            return;
        }
        d->stage = CONNECTING;
        connect_step(d);
        return;
    }
    finish(d, d->rc ? d->rc : -EHOSTUNREACH, d->err);
}

/* clicon: listens on the first free port of the range for the server's host, `a`, whose
 * connection the listening layer's opening takes; then the layers go on top. */
static void await_start(struct rdt_dialer *d, const struct rdt_addrs *a)
{
    char err[RDT_ERR_MAX];
    int rc = rdt_clicon_listen(&d->ts, a, &d->c, &d->listened, err, sizeof(err));
    if (rc) {
        finish(d, rc, err);
        return;
    }
    d->stage = AWAITING;
    connect_step(d); /* with no address to try after it: its failure is the dial's */
}

static void resolved_cb(int rc, const struct rdt_addrs *a, const char *err, void *arg)
{
    struct rdt_dialer *d = arg;
    d->lookup = NULL;
    if (rc) {
        char why[RDT_ERR_MAX];
        snprintf(why, sizeof(why), "cannot resolve %s", err);
        finish(d, rc == -ENOENT ? -ENXIO : -EHOSTUNREACH, why);
        return;
    }
    if (d->ts.clicon[0]) {
        await_start(d, a);
        return;
    }
    d->addrs = *a;
    try_next(d);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdt_dialer *d = arg;
    char err[RDT_ERR_MAX];
    if (d->stage == RESOLVING)
        snprintf(err, sizeof(err),
                 "cannot resolve %s: no answer from the name servers within %d ms",
                 d->ts.clicon[0] ? d->ts.clicon : d->ts.server, d->timeout_ms);
    else if (d->stage == AWAITING)
        snprintf(err, sizeof(err), "tcp: %s did not connect to port %u in time", d->ts.clicon,
                 d->listened);
    else if (d->stage == CONNECTING) /* nothing answered, not even a refusal */
        snprintf(err, sizeof(err), "tcp: no answer from %s within %d ms", d->what, d->timeout_ms);
    else if (d->stage == OPENING)
        snprintf(err, sizeof(err), "no answer from %s within %d ms", d->what, d->timeout_ms);
    else
        rdt_dial_timeout_text(&d->ts, d->timeout_ms, err, sizeof(err));
    finish(d, -ETIMEDOUT, err);
}

static void soon_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    step(arg);
}

static int pipe_start(struct rdt_dialer *d, char *err, size_t errlen)
{
    int rc = rdt_pipe_connect(&d->ts, rdt_now_ms(), &d->c, err, errlen);
    if (rc)
        return rc;
    d->stage = CONNECTING; /* connected: the layers start from the loop */
    event_active(d->soon, EV_TIMEOUT, 0);
    return 0;
}

/* A dialer with its deadline set, nothing started yet. */
static struct rdt_dialer *dialer_new(struct event_base *base, const struct rdt_tstring *ts,
                                     const char *password, enum rdt_role role, int timeout_ms,
                                     int64_t deadline, int grace_ms, rdt_dial_cb cb, void *arg)
{
    struct rdt_dialer *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    *d = (struct rdt_dialer){
        .base = base, .ts = *ts, .role = role, .timeout_ms = timeout_ms, .cb = cb, .arg = arg};
    snprintf(d->password, sizeof(d->password), "%s", password ? password : "");
    snprintf(d->what, sizeof(d->what), "%s:%u", ts->server, ts->port_lo);
    int64_t left = timeout_ms;
    if (deadline && deadline - rdt_now_ms() < left)
        left = deadline > rdt_now_ms() ? deadline - rdt_now_ms() : 0;
    left += grace_ms;
    d->until = rdt_now_ms() + left;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    d->timer = evtimer_new(base, timer_cb, d);
    d->soon = event_new(base, -1, 0, soon_cb, d);
    if (!d->timer || !d->soon || evtimer_add(d->timer, &tv) != 0) {
        rdt_dialer_free(d);
        return NULL;
    }
    return d;
}

int rdt_dial_async(struct rdt_dialer **out, struct event_base *base, struct rdt_resolver *res,
                   const struct rdt_tstring *ts, const char *password, enum rdt_role role,
                   int timeout_ms, int64_t deadline, rdt_dial_cb cb, void *arg, char *err,
                   size_t errlen)
{
    *out = NULL;
    bool pipe = ts->proto == RDT_NPIPE || ts->proto == RDT_SPIPE;
    if (ts->proto == RDT_COM)
        return rdt_com_dial_async(out, base, ts, password, role, timeout_ms, deadline, cb, arg, err,
                                  errlen);
    struct rdt_dialer *d = dialer_new(base, ts, password, role, timeout_ms, deadline, 0, cb, arg);
    int rc = d ? 0 : rdt_errf(-ENOMEM, err, errlen, "out of memory");
    if (rc == 0 && pipe) {
        rc = pipe_start(d, err, errlen);
    } else if (rc == 0) {
        const char *host = ts->clicon[0] ? ts->clicon : ts->server; /* clicon: who may connect */
        d->lookup = rdt_lookup_addrs(res, host, ts->ipv6, resolved_cb, d);
        if (!d->lookup)
            rc = rdt_errf(-ENOMEM, err, errlen, "out of memory");
    }
    if (rc) {
        rdt_dialer_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int rdt_dial_over_grace(struct rdt_dialer **out, struct event_base *base, struct rdt_conn *c,
                        const char *what, const struct rdt_tstring *ts, const char *password,
                        enum rdt_role role, int timeout_ms, int64_t deadline, int grace_ms,
                        rdt_dial_cb cb, void *arg, char *err, size_t errlen)
{
    *out = NULL;
    struct rdt_dialer *d =
        dialer_new(base, ts, password, role, timeout_ms, deadline, grace_ms, cb, arg);
    if (!d) {
        rdt_conn_free(c);
        return rdt_errf(-ENOMEM, err, errlen, "out of memory");
    }
    d->c = c;
    d->stage = OPENING; /* the stack's own opening goes on from the loop */
    snprintf(d->what, sizeof(d->what), "%s", what);
    event_active(d->soon, EV_TIMEOUT, 0);
    *out = d;
    return 0;
}

int rdt_dial_over(struct rdt_dialer **out, struct event_base *base, struct rdt_conn *c,
                  const char *what, const struct rdt_tstring *ts, const char *password,
                  enum rdt_role role, int timeout_ms, int64_t deadline, rdt_dial_cb cb, void *arg,
                  char *err, size_t errlen)
{
    return rdt_dial_over_grace(out, base, c, what, ts, password, role, timeout_ms, deadline, 0, cb,
                               arg, err, errlen);
}

/* ---- Waiting for one dial: the blocking rdt_dial (but for pipes), and others' ---- */

struct dial_wait {
    struct event_base *base;
    bool done;
    int rc;
    struct rdt_conn *c;
    char *err;
    size_t errlen;
};

static void wait_cb(struct rdt_conn *conn, int rc, const char *err, void *arg)
{
    struct dial_wait *w = arg;
    w->done = true;
    w->rc = rc;
    w->c = conn;
    if (err)
        snprintf(w->err, w->errlen, "%s", err);
    event_base_loopbreak(w->base);
}

int rdt_dial_run(struct rdt_conn **out, const struct rdt_dial_run_ops *ops, void *arg, char *err,
                 size_t errlen)
{
    *out = NULL;
    struct dial_wait w = {.base = event_base_new(), .err = err, .errlen = errlen};
    struct rdt_resolver *res = NULL;
    if (!w.base)
        return rdt_errf(-ENOMEM, err, errlen, "cannot create an event loop");
    int rc = rdt_resolver_new(&res, w.base, err, errlen);
    if (rc == 0)
        rc = ops->start(arg, w.base, res, wait_cb, &w, err, errlen);
    while (rc == 0 && !w.done)
        if (event_base_loop(w.base, EVLOOP_ONCE) < 0)
            break;
    if (rc == 0 && !w.done) {
        ops->cancel(arg);
        rc = rdt_errf(-EIO, err, errlen, "the event loop failed");
    } else if (rc == 0) {
        rc = w.rc;
        *out = w.c;
    }
    rdt_resolver_free(res);
    event_base_free(w.base);
    return rc;
}

/* rdt_dial_wait's dial, as rdt_dial_run starts it. */
struct dial_args {
    const struct rdt_tstring *ts;
    const char *password;
    enum rdt_role role;
    int timeout_ms;
    struct rdt_dialer *d;
};

static int args_start(void *arg, struct event_base *base, struct rdt_resolver *res, rdt_dial_cb cb,
                      void *cb_arg, char *err, size_t errlen)
{
    struct dial_args *a = arg;
    return rdt_dial_async(&a->d, base, res, a->ts, a->password, a->role, a->timeout_ms, 0, cb,
                          cb_arg, err, errlen);
}

static void args_cancel(void *arg)
{
    struct dial_args *a = arg;
    rdt_dialer_free(a->d);
}

int rdt_dial_wait(struct rdt_conn **out, const struct rdt_tstring *ts, const char *password,
                  enum rdt_role role, int timeout_ms, char *err, size_t errlen)
{
    static const struct rdt_dial_run_ops ops = {.start = args_start, .cancel = args_cancel};
    struct dial_args a = {.ts = ts, .password = password, .role = role, .timeout_ms = timeout_ms};
    return rdt_dial_run(out, &ops, &a, err, errlen);
}
