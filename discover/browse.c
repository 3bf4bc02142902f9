/* Asking many brokers at once, on one loop: each host found (named, in DNS, on the LAN) is a job
 * that resolves its name, dials each address in turn and asks for the rows; all jobs run side by
 * side under one deadline, so the whole answer takes as long as the slowest host. */
#include "browse_int.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

static int64_t left_ms(const struct rdd_browse *b)
{
    int64_t left = b->deadline - rdt_now_ms();
    return left > 1 ? left : 1;
}

void rdd_browse_check_done(struct rdd_browse *b)
{
    if (b->finished || b->sources_open > 0)
        return;
    struct job *j;
    TAILQ_FOREACH(j, &b->jobs, link)
    if (!j->h.done)
        return;
    b->finished = true;
    if (b->ops.done)
        b->ops.done(b->arg);
}

static void job_release(struct job *j)
{
    rdt_lookup_cancel(j->lookup);
    j->lookup = NULL;
    rdt_dialer_free(j->dialer);
    j->dialer = NULL;
    if (j->io)
        event_free(j->io);
    j->io = NULL;
    if (j->timer)
        event_free(j->timer);
    j->timer = NULL;
    rdt_conn_free(j->c);
    j->c = NULL;
    free(j->frame);
    j->frame = NULL;
    rdb_reader_free(&j->rd);
}

/* The job's end: answered (RDD_OK) or failed with `status` and the reason. */
static void job_start(struct job *j);

/* A job ended: the first waiting one takes its place. */
static void slot_free(struct rdd_browse *b)
{
    b->active--;
    struct job *w;
    TAILQ_FOREACH(w, &b->jobs, link)
    if (w->waiting) {
        w->waiting = false;
        job_start(w);
        return;
    }
}

static void job_end(struct job *j, enum rdd_status status, const char *err)
{
    if (j->h.done)
        return;
    j->h.done = true;
    j->waiting = false;
    j->h.res.status = status;
    if (status != RDD_OK)
        snprintf(j->h.res.err, sizeof(j->h.res.err), "%s", err);
    if (status == RDD_OK && j->c)
        rdt_conn_discard(j->c); /* the whole answer is in */
    else
        rdt_conn_free(j->c);
    j->c = NULL;
    job_release(j);
    if (j->b->ops.host)
        j->b->ops.host(&j->h, j->b->arg);
    if (j->started)
        slot_free(j->b);
    rdd_browse_check_done(j->b);
}

static enum rdd_status status_of(int rc, const char *why)
{
    switch (rc) {
    case -ECONNREFUSED:
    case -ENOENT:
        return RDD_NO_BROKER;
    case -ENXIO:
        return RDD_NOT_FOUND;
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -EHOSTDOWN:
        return RDD_UNREACHABLE;
    case -EBUSY: /* a local broker that accepts no connection */
        return RDD_TIMEOUT;
    case -ETIMEDOUT:
        return strstr(why, "handshake") ? RDD_TIMEOUT : RDD_UNREACHABLE;
    case -EPROTO:
        return strstr(why, "same version") ? RDD_VERSION : RDD_FAILED;
    default:
        return RDD_FAILED;
    }
}

static void job_fail_dial(struct job *j, int rc, const char *why)
{
    char err[2 * RDT_ERR_MAX];
    enum rdd_status st = status_of(rc, why);
    if (st == RDD_NO_BROKER)
        snprintf(err, sizeof(err), "%s: no broker listening (%s)", j->h.name, why);
    else
        snprintf(err, sizeof(err), "%s: %s", j->h.name, why);
    job_end(j, st, err);
}

/* ---- Asking, once connected ---- */

static void job_io_cb(evutil_socket_t fd, short what, void *arg);

static void job_wait(struct job *j, short want)
{
    if (j->io)
        event_free(j->io);
    short ev = (short)(((want & POLLOUT) ? EV_WRITE : 0) | ((want & POLLIN) ? EV_READ : 0));
    j->io = event_new(j->b->base, rdt_conn_fd(j->c), ev, job_io_cb, j);
    if (!j->io || event_add(j->io, NULL) != 0)
        job_end(j, RDD_FAILED, "out of memory");
}

/* A frame from the broker: the rows, or its refusal. */
static void job_frame(struct job *j, enum rdb_type type, json_t *body)
{
    char why[RDT_ERR_MAX + 64];
    if (type == RDB_ERROR) {
        const char *msg = "no reason given";
        json_unpack(body, "{s:s}", "message", &msg);
        snprintf(why, sizeof(why), "%s: the broker refused the query: %s", j->h.name, msg);
        job_end(j, RDD_FAILED, why);
    } else if (type != RDB_LIST || rdd_take_rows(&j->h.res, body) != 0) {
        snprintf(why, sizeof(why), "%s: the broker's answer is not a list of servers", j->h.name);
        job_end(j, RDD_FAILED, why);
    } else {
        job_end(j, RDD_OK, NULL);
    }
}

static void job_read(struct job *j)
{
    char buf[16384], why[RDT_ERR_MAX];
    for (;;) {
        enum rdb_type type;
        json_t *body = NULL;
        int rc = rdb_reader_next(&j->rd, &type, &body, why, sizeof(why));
        if (rc == 1) {
            job_frame(j, type, body);
            json_decref(body);
            return;
        }
        size_t n = 0;
        if (rc == 0)
            rc = rdt_conn_read(j->c, buf, sizeof(buf), &n);
        if (rc == -EAGAIN) {
            job_wait(j, POLLIN);
            return;
        }
        if (rc == 0 && n == 0)
            snprintf(why, sizeof(why), "the broker closed the connection");
        else if (rc && rc != -EPROTO)
            snprintf(why, sizeof(why), "%s", rdt_conn_error(j->c));
        if (rc || n == 0 || rdb_reader_feed(&j->rd, buf, n) != 0) {
            char err[2 * RDT_ERR_MAX];
            snprintf(err, sizeof(err), "%s: %s", j->h.name, why);
            job_end(j, RDD_FAILED, err);
            return;
        }
    }
}

static void job_write(struct job *j)
{
    while (j->frame_off < j->frame_len) {
        size_t n = 0;
        int rc = rdt_conn_write(j->c, j->frame + j->frame_off, j->frame_len - j->frame_off, &n);
        if (rc == -EAGAIN) {
            job_wait(j, POLLOUT);
            return;
        }
        if (rc) {
            char err[2 * RDT_ERR_MAX];
            snprintf(err, sizeof(err), "%s: %s", j->h.name, rdt_conn_error(j->c));
            job_end(j, RDD_FAILED, err);
            return;
        }
        j->frame_off += n;
    }
    job_read(j);
}

static void job_io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct job *j = arg;
    if (j->frame_off < j->frame_len)
        job_write(j);
    else
        job_read(j);
}

/* The job's own timer covers the look-up and the query; the dialer has its own. */
static void job_timer_set(struct job *j, bool on)
{
    int64_t left = left_ms(j->b);
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    if (on)
        evtimer_add(j->timer, &tv);
    else
        evtimer_del(j->timer);
}

/* ---- Dialing each address ---- */

static void job_dial_next(struct job *j);

static void dialed_cb(struct rdt_conn *conn, int rc, const char *err, void *arg)
{
    struct job *j = arg;
    j->dialer = NULL;
    if (rc) {
        j->last_rc = rc;
        snprintf(j->last_err, sizeof(j->last_err), "%s", err);
        /* a broker that answered, or the time is up: no other address is tried */
        if (rc == -EPROTO || rc == -ETIMEDOUT || j->next_addr >= j->addrs.n || j->local)
            job_fail_dial(j, rc, err);
        else
            job_dial_next(j);
        return;
    }
    j->c = conn;
    job_timer_set(j, true);
    json_t *q = json_pack("{s:s}", "filter", rdb_filter_name(j->b->cfg.filter));
    j->frame = q ? rdb_frame_encode(RDB_QUERY, q, &j->frame_len) : NULL;
    json_decref(q);
    if (!j->frame) {
        job_end(j, RDD_FAILED, "out of memory");
        return;
    }
    job_write(j);
}

static void job_dial(struct job *j, const struct rdt_tstring *ts)
{
    char err[RDT_ERR_MAX];
    bool pipe = ts->proto == RDT_NPIPE || ts->proto == RDT_SPIPE; /* dialed without names */
    struct rdt_resolver *res = pipe ? NULL : rdd_browse_res(j->b, err, sizeof(err));
    job_timer_set(j, false);
    int rc = pipe || res ? rdt_dial_async(&j->dialer, j->b->base, res, ts, NULL, RDT_ROLE_REQUESTER,
                                          j->b->cfg.timeout_ms, j->b->deadline, dialed_cb, j, err,
                                          sizeof(err))
                         : -EIO;
    if (rc)
        job_fail_dial(j, rc, err);
}

static void job_dial_next(struct job *j)
{
    struct rdt_tstring ts = {
        .proto = RDT_TCP, .side = RDT_CLIENT, .port_lo = j->h.port, .port_hi = j->h.port};
    if (j->b->have_via)
        ts = j->b->via;
    const char *addr = j->addrs.addr[j->next_addr++];
    snprintf(ts.server, sizeof(ts.server), "%s", addr);
    snprintf(j->h.res.addr, sizeof(j->h.res.addr), "%s", addr);
    job_dial(j, &ts);
    explicit_bzero(ts.password, sizeof(ts.password));
}

static void resolved_cb(int rc, const struct rdt_addrs *a, const char *err, void *arg)
{
    struct job *j = arg;
    j->lookup = NULL;
    if (rc) {
        job_end(j, rdd_status_of_lookup(rc), err);
        return;
    }
    j->addrs = *a;
    struct job *o;
    TAILQ_FOREACH(o, &j->b->jobs, link)
    if (o != j && o->addrs.n && o->h.port == j->h.port &&
        strcmp(o->addrs.addr[0], a->addr[0]) == 0 && !(o->h.done && o->h.res.status != RDD_OK)) {
        j->h.duplicate = true; /* the same broker under another name: asked once */
        job_end(j, RDD_OK, NULL);
        return;
    }
    job_dial_next(j);
}

static void job_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct job *j = arg;
    char err[2 * RDT_ERR_MAX];
    if (j->lookup)
        snprintf(err, sizeof(err), "%s: no answer from the name servers within %d ms", j->h.name,
                 j->b->cfg.timeout_ms);
    else
        snprintf(err, sizeof(err), "%s: the broker did not answer the query within %d ms",
                 j->h.name, j->b->cfg.timeout_ms);
    job_end(j, j->lookup ? RDD_UNREACHABLE : RDD_TIMEOUT, err);
}

static bool is_local(const char *host)
{
    return strcmp(host, ".") == 0 || strcmp(host, "localhost") == 0;
}

/* The local host is asked over the broker's socket when it is there: that also lists the
 * caller's own unprivileged servers. */
static bool job_start_local(struct job *j)
{
    struct stat st;
    if (j->b->have_via || j->h.source != RDD_SRC_HOST || !is_local(j->h.name) ||
        stat(rdb_sock_path(), &st) != 0)
        return false;
    struct rdt_tstring ts = {.proto = RDT_NPIPE, .side = RDT_CLIENT};
    snprintf(ts.pipe, sizeof(ts.pipe), "%s", rdb_sock_path());
    snprintf(ts.server, sizeof(ts.server), "localhost");
    snprintf(j->h.res.addr, sizeof(j->h.res.addr), "%s", rdb_sock_path());
    j->local = true;
    job_dial(j, &ts);
    return true;
}

static void job_start(struct job *j)
{
    if (j->b->active >= RDD_BROWSE_ACTIVE_MAX) {
        j->waiting = true; /* started when another ends */
        return;
    }
    j->b->active++;
    j->started = true;
    if (rdt_now_ms() >= j->b->deadline) {
        char err[RDT_HOST_MAX + 128];
        snprintf(err, sizeof(err), "%s: not asked: the %d ms allowed went by first", j->h.name,
                 j->b->cfg.timeout_ms);
        job_end(j, RDD_TIMEOUT, err);
        return;
    }
    j->timer = evtimer_new(j->b->base, job_timer_cb, j);
    if (!j->timer) {
        job_end(j, RDD_FAILED, "out of memory");
        return;
    }
    bool via_pipe =
        j->b->have_via && (j->b->via.proto == RDT_NPIPE || j->b->via.proto == RDT_SPIPE);
    if (via_pipe) {
        snprintf(j->h.res.addr, sizeof(j->h.res.addr), "%.63s", j->b->via.pipe);
        j->local = true;
        job_dial(j, &j->b->via);
    } else if (!job_start_local(j)) {
        char err[RDT_ERR_MAX] = "out of memory";
        struct rdt_resolver *res = rdd_browse_res(j->b, err, sizeof(err));
        job_timer_set(j, true);
        j->lookup = res ? rdt_lookup_addrs(res, j->h.server, false, resolved_cb, j) : NULL;
        if (!j->lookup)
            job_end(j, RDD_FAILED, err);
    }
}

/* ---- Hosts found ---- */

static bool same_host(const struct job *j, const char *server, uint16_t port)
{
    return j->h.port == port && strcasecmp(j->h.server, server) == 0;
}

/* A name as compared and shown: without the root's trailing dot. */
static void name_copy(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);
    snprintf(dst, len, "%.*s", (int)(n > 1 && src[n - 1] == '.' ? n - 1 : n), src);
}

int rdd_browse_add(struct rdd_browse *b, const char *name_in, const char *server_in, uint16_t port,
                   enum rdd_source source, const char *fail)
{
    struct job *j;
    char name[RDT_HOST_MAX + 1], server[RDT_HOST_MAX + 1];
    name_copy(name, sizeof(name), name_in);
    name_copy(server, sizeof(server), server_in);
    if (b->finished)
        return 0; /* found after the end: not asked */
    TAILQ_FOREACH(j, &b->jobs, link)
    if (same_host(j, server, port))
        return 0; /* found twice (named, and in DNS or on the LAN) */
    if (b->njobs >= RDD_BROWSE_HOSTS_MAX) {
        if (!b->too_many++)
            rdd_browse_source_failed(
                b, "hosts",
                "more than " RDD_STR(
                    RDD_BROWSE_HOSTS_MAX) " brokers found: the others are not asked");
        return -ENOSPC;
    }
    j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->b = b;
    rdb_reader_init(&j->rd);
    snprintf(j->h.name, sizeof(j->h.name), "%s", name);
    snprintf(j->h.server, sizeof(j->h.server), "%s", server);
    j->h.port = port;
    j->h.source = source;
    TAILQ_INSERT_TAIL(&b->jobs, j, link);
    b->njobs++;
    if (b->ops.host)
        b->ops.host(&j->h, b->arg);
    if (fail)
        job_end(j, RDD_FAILED, fail);
    else
        job_start(j);
    return 0;
}

/* HOST, HOST:PORT, [V6]:PORT or a bare IPv6 literal. */
int rdd_host_port(const char *s, uint16_t dflt, char *host, size_t len, uint16_t *port)
{
    while (*s == '\\')
        s++;
    const char *colon = strrchr(s, ':'), *close = strchr(s, ']');
    *port = dflt;
    if (s[0] == '[' && close) {
        snprintf(host, len, "%.*s", (int)(close - s - 1), s + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
        if (close[1] && !colon)
            return -EINVAL;
    } else if (colon && strchr(s, ':') != colon) {
        snprintf(host, len, "%s", s); /* an IPv6 literal without a port */
        colon = NULL;
    } else {
        snprintf(host, len, "%.*s", (int)(colon ? (size_t)(colon - s) : strlen(s)), s);
    }
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 1 || p > 65535)
            return -EINVAL;
        *port = (uint16_t)p;
    }
    return host[0] && strlen(host) <= RDT_HOST_MAX ? 0 : -EINVAL;
}

void rdd_browse_source_failed(struct rdd_browse *b, const char *what, const char *err)
{
    if (b->ops.source)
        b->ops.source(what, err, b->arg);
}

/* The resolver, made on first use: a browse of this host's broker alone (rdq -QR localhost,
 * over its socket) reads no resolver configuration. NULL with why in err when it cannot be. */
struct rdt_resolver *rdd_browse_res(struct rdd_browse *b, char *err, size_t errlen)
{
    if (!b->res && rdt_resolver_new(&b->res, b->base, err, errlen) != 0)
        b->res = NULL;
    return b->res;
}

/* ---- The whole ---- */

static void start_cb(evutil_socket_t fd, short what, void *arg);

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdd_browse *b = arg;
    rdd_dns_expire(b);
    rdd_browse_lan_expire(b);
    rdd_browse_check_done(b);
}

int rdd_browse_open(struct rdd_browse **out, struct event_base *base,
                    const struct rdd_browse_config *cfg, const struct rdd_browse_ops *ops,
                    void *arg, char *err, size_t errlen)
{
    *out = NULL;
    struct rdd_browse *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    b->base = base;
    b->cfg = *cfg;
    b->ops = *ops;
    b->arg = arg;
    b->port = rdd_broker_port(cfg->port);
    b->deadline = rdt_now_ms() + cfg->timeout_ms;
    TAILQ_INIT(&b->jobs);
    LIST_INIT(&b->domains);
    if (cfg->via) {
        b->via = *cfg->via;
        b->have_via = true;
    }
    struct timeval tv = {cfg->timeout_ms / 1000, (cfg->timeout_ms % 1000) * 1000}, zero = {0, 0};
    int rc = 0;
    if (!(b->deadline_ev = evtimer_new(base, deadline_cb, b)) ||
        evtimer_add(b->deadline_ev, &tv) != 0)
        rc = -ENOMEM, snprintf(err, errlen, "out of memory");
    if (rc) {
        rdd_browse_free(b);
        return rc;
    }
    b->sources_open++; /* held until the sources start, from the loop */
    if (!(b->start_ev = evtimer_new(base, start_cb, b)) || evtimer_add(b->start_ev, &zero) != 0) {
        snprintf(err, errlen, "out of memory");
        rdd_browse_free(b);
        return -ENOMEM;
    }
    *out = b;
    return 0;
}

/* The sources start from the loop: nothing is called back from inside rdd_browse_open. */
static void start_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdd_browse *b = arg;
    const struct rdd_browse_config *cfg = &b->cfg;
    for (int i = 0; i < cfg->nhosts; i++) {
        char host[RDT_HOST_MAX + 1], why[RDT_HOST_MAX + 64];
        uint16_t port;
        if (rdd_host_port(cfg->hosts[i], b->port, host, sizeof(host), &port) != 0) {
            snprintf(why, sizeof(why), "%s: not a host or HOST:PORT", cfg->hosts[i]);
            rdd_browse_add(b, cfg->hosts[i], cfg->hosts[i], 0, RDD_SRC_HOST, why);
        } else {
            rdd_browse_add(b, host, host, port, RDD_SRC_HOST, NULL);
        }
    }
    for (int i = 0; i < cfg->ndomains; i++)
        rdd_dns_browse(b, cfg->domains[i]);
    if (cfg->lan)
        rdd_browse_lan_start(b);
    b->sources_open--;
    rdd_browse_check_done(b);
}

void rdd_browse_free(struct rdd_browse *b)
{
    if (!b)
        return;
    rdd_browse_lan_stop(b);
    rdd_dns_free_all(b);
    struct job *j;
    while ((j = TAILQ_FIRST(&b->jobs))) {
        TAILQ_REMOVE(&b->jobs, j, link);
        job_release(j);
        rdd_result_free(&j->h.res);
        free(j);
    }
    rdt_resolver_free(b->res);
    if (b->deadline_ev)
        event_free(b->deadline_ev);
    if (b->start_ev)
        event_free(b->start_ev);
    explicit_bzero(&b->via, sizeof(b->via));
    free(b);
}

const struct rdd_host *rdd_browse_next(const struct rdd_browse *b, const struct rdd_host *prev)
{
    const struct job *j = prev ? TAILQ_NEXT((const struct job *)prev, link) : TAILQ_FIRST(&b->jobs);
    return j ? &j->h : NULL;
}

bool rdd_browse_finished(const struct rdd_browse *b)
{
    return b->finished;
}
