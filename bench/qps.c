/* One-shot queries per second: N clients on one event loop, each connecting, passing the session
 * layer, sending a QUERY, reading the LIST (which must hold the expected rows), closing, and
 * starting over. The measurement is split into repetitions (consecutive windows) after a
 * warm-up; a window with any failure is not a valid measurement.
 *
 * The first answer is parsed and checked row by row; every later answer must be byte for byte
 * the same frame (else it is parsed and checked in full), so that checking costs the load
 * generator little. `floor` runs the same loop with bare connections (connect, the server
 * closes, close) against a sink of its own: the loopback's floor on this machine. */
#include "bench.h"
#include "broker.h"
#include "internal.h" /* rdt_sock_connect_start: the non-blocking connect */

#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WARMUP_S 0.5
#define RETRY_US 10000 /* after a failed connection */

struct qps;

struct client {
    struct qps *q;
    struct rdt_conn *conn;
    struct event *ev;
    struct rdb_reader rd;
    size_t sent;
    short want; /* EV_READ or EV_WRITE: what the connection waits for */
};

struct window {
    uint64_t done, failed;
    int64_t t0;
    double cpu_self, cpu_server;
};

struct qps {
    const struct bench_opts *o;
    bool bare;        /* floor: no session layer, no query */
    pid_t server_pid; /* the broker or the sink, for its CPU time */
    struct event_base *base;
    struct sockaddr_storage sa;
    socklen_t salen;
    bool tcp;
    uint8_t *query, *answer; /* the QUERY frame; the first checked LIST frame */
    size_t query_len, answer_len;
    struct client *clients;
    struct window win;
    struct event *tick;
    struct timeval every;
    double *rates, *server_us; /* per repetition: queries/s, server CPU µs per query */
    int rep;
    bool failed_rep;
    char first_err[RDT_ERR_MAX];
};

/* ---- Checking an answer ---- */

static void client_fail(struct client *cl, const char *why)
{
    struct qps *q = cl->q;
    q->win.failed++;
    if (!q->first_err[0])
        snprintf(q->first_err, sizeof(q->first_err), "%s", why);
}

/* The full check: a LIST of the expected rows. Keeps the first good frame for later answers. */
static int check_parsed(struct client *cl)
{
    struct qps *q = cl->q;
    struct rdb_reader *r = &cl->rd;
    uint8_t *frame = malloc(r->len);
    size_t len = r->len;
    char err[256] = "";
    enum rdb_type type = 0;
    json_t *body = NULL;
    if (frame)
        memcpy(frame, r->buf, len);
    int rc = rdb_reader_next(r, &type, &body, err, sizeof(err));
    size_t n = json_array_size(json_object_get(body, "rows"));
    json_decref(body);
    if (rc == 1 && type == RDB_LIST && n == (size_t)q->o->rows && r->len == 0) {
        if (!q->answer && frame) {
            q->answer = frame, q->answer_len = len;
            frame = NULL;
        }
        free(frame);
        return 0;
    }
    free(frame);
    if (!err[0])
        snprintf(err, sizeof(err), "answer of type %d with %zu rows, not a LIST of %d", (int)type,
                 n, q->o->rows);
    client_fail(cl, err);
    return -EBADMSG;
}

/* 0 when the answer is complete and right, -EAGAIN while it is incomplete, else -EBADMSG. */
static int check_answer(struct client *cl)
{
    const struct rdb_reader *r = &cl->rd;
    if (rdb_reader_missing(r))
        return -EAGAIN;
    const struct qps *q = cl->q;
    if (q->answer && r->len == q->answer_len && memcmp(r->buf, q->answer, r->len) == 0)
        return 0;
    return check_parsed(cl);
}

/* ---- One client ---- */

static void client_start(struct client *cl);
static void client_step(struct client *cl);

static void client_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client_step(arg);
}

static void client_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client_start(arg);
}

/* After a failure, starts over from the loop a little later: never at once, which would recurse
 * (and spin) while the server is gone. */
static void client_retry(struct client *cl)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = RETRY_US};
    event_assign(cl->ev, cl->q->base, -1, 0, client_retry_cb, cl);
    event_add(cl->ev, &tv);
}

static void client_close(struct client *cl)
{
    if (cl->ev)
        event_del(cl->ev);
    rdt_conn_discard(cl->conn); /* as rdd_query ends a query's connection */
    cl->conn = NULL;
    rdb_reader_free(&cl->rd);
}

/* Reads until the answer is complete (or, bare, until the server closes). */
static int client_read(struct client *cl)
{
    uint8_t buf[8192];
    for (;;) {
        size_t n = 0;
        int rc = rdt_conn_read(cl->conn, buf, sizeof(buf), &n);
        if (rc)
            return rc;
        if (n == 0)
            return cl->q->bare ? 0 : -ECONNRESET;
        if (cl->q->bare)
            return -EPROTO; /* a sink sends nothing */
        if ((rc = rdb_reader_feed(&cl->rd, buf, n)) || (rc = check_answer(cl)) != -EAGAIN)
            return rc;
    }
}

/* Advances the exchange as far as it goes: 0 when the answer came, -EAGAIN to wait. */
static int client_advance(struct client *cl)
{
    struct qps *q = cl->q;
    int rc = rdt_conn_open_step(cl->conn);
    if (rc == -EAGAIN)
        cl->want = rdt_conn_events(cl->conn) & POLLOUT ? EV_WRITE : EV_READ;
    if (rc)
        return rc;
    while (cl->sent < q->query_len) {
        size_t n = 0;
        rc = rdt_conn_write(cl->conn, q->query + cl->sent, q->query_len - cl->sent, &n);
        cl->want = EV_WRITE;
        if (rc)
            return rc;
        cl->sent += n;
    }
    cl->want = EV_READ;
    return client_read(cl);
}

static const char *client_error(struct client *cl, int rc)
{
    const char *e = rdt_conn_error(cl->conn);
    if (rc == -ECONNRESET)
        return "the broker closed the connection before answering";
    return e && *e ? e : strerror(-rc);
}

static void client_step(struct client *cl)
{
    int rc = client_advance(cl);
    if (rc == -EAGAIN) {
        event_assign(cl->ev, cl->q->base, rdt_conn_fd(cl->conn), cl->want, client_cb, cl);
        event_add(cl->ev, NULL);
        return;
    }
    if (rc != 0 && rc != -EBADMSG)
        client_fail(cl, client_error(cl, rc));
    client_close(cl);
    if (rc != 0) {
        client_retry(cl);
        return;
    }
    cl->q->win.done++;
    client_start(cl); /* an answer came through the loop: this does not recurse */
}

/* The connection stack: the socket, and the session layer unless bare. */
static struct rdt_conn *client_conn(struct qps *q, int fd, bool connecting)
{
    const struct rdt_ops *ops = q->tcp ? &rdt_tcp_ops : &rdt_unix_ops;
    struct rdt_conn *c =
        connecting ? rdt_sock_connecting(ops, fd, "broker") : rdt_sock_conn(ops, fd);
    if (!c || q->bare)
        return c;
    return rdt_auth_conn(c, RDT_ROLE_REQUESTER, NULL, RDT_PROTOCOL_VERSION);
}

static void client_start(struct client *cl)
{
    struct qps *q = cl->q;
    int fd = -1;
    int rc = rdt_sock_connect_start((struct sockaddr *)&q->sa, q->salen, &fd);
    if (rc && rc != -EINPROGRESS) {
        if (fd >= 0)
            close(fd);
        client_fail(cl, strerror(-rc));
        client_retry(cl);
        return;
    }
    cl->conn = client_conn(q, fd, rc != 0);
    if (!cl->conn) {
        client_fail(cl, "out of memory");
        client_retry(cl);
        return;
    }
    cl->sent = 0;
    rdb_reader_init(&cl->rd);
    client_step(cl);
}

/* ---- Windows ---- */

static void window_open(struct qps *q)
{
    q->win = (struct window){.t0 = bench_now_us(),
                             .cpu_self = bench_cpu_seconds(0),
                             .cpu_server = q->server_pid ? bench_cpu_seconds(q->server_pid) : -1};
    q->first_err[0] = '\0';
}

/* "server 98% (45.0 µs each)", or nothing when the server's CPU time is unknown. */
/* Microseconds of `cpu_s` per answer of the window. */
static double per_answer(const struct qps *q, double cpu_s)
{
    return q->win.done ? cpu_s * 1e6 / (double)q->win.done : 0;
}

/* ", broker 98% (45.0 µs each)", or nothing when the server's CPU time is unknown. */
static void server_cpu(const struct qps *q, double cpu_s, double s, char *buf, size_t len)
{
    buf[0] = '\0';
    if (cpu_s >= 0)
        snprintf(buf, len, ", %s %.0f%% (%.1f µs each)", q->bare ? "sink" : "broker",
                 cpu_s / s * 100, per_answer(q, cpu_s));
}

static void window_close(struct qps *q)
{
    double s = (double)(bench_now_us() - q->win.t0) / 1e6;
    double self = bench_cpu_seconds(0) - q->win.cpu_self;
    double server =
        q->win.cpu_server < 0 ? -1 : bench_cpu_seconds(q->server_pid) - q->win.cpu_server;
    char srv[64];
    if (q->win.done == 0) { /* not one answer: not a measurement */
        q->win.failed++;
        if (!q->first_err[0])
            snprintf(q->first_err, sizeof(q->first_err), "no answer at all");
    }
    server_cpu(q, server, s, srv, sizeof(srv));
    q->rates[q->rep] = (double)q->win.done / s;
    q->server_us[q->rep] = server < 0 ? -1 : per_answer(q, server);
    q->failed_rep |= q->win.failed > 0;
    fprintf(stderr,
            "  %s %s rep %d: %llu in %.2f s = %.0f/s, %llu failed; CPU: client %.0f%% (%.1f µs "
            "each)%s%s%s\n",
            q->bare ? "floor" : "qps", q->tcp ? "tcp" : "unix", q->rep + 1,
            (unsigned long long)q->win.done, s, q->rates[q->rep], (unsigned long long)q->win.failed,
            self / s * 100, per_answer(q, self), srv, q->first_err[0] ? ": " : "", q->first_err);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct qps *q = arg;
    if (q->rep >= 0)
        window_close(q);
    if (++q->rep == q->o->reps) {
        event_base_loopbreak(q->base);
        return;
    }
    window_open(q);
    evtimer_add(q->tick, &q->every);
}

/* ---- The run ---- */

static int qps_setup(struct qps *q)
{
    const struct bench_opts *o = q->o;
    if (bench_addr(o, &q->sa, &q->salen) != 0)
        return -1;
    q->tcp = q->sa.ss_family != AF_UNIX;
    json_t *body = json_pack("{s:s}", "filter", "all");
    q->query = rdb_frame_encode(RDB_QUERY, body, &q->query_len);
    json_decref(body);
    if (q->bare)
        q->query_len = 0;
    q->base = event_base_new();
    q->clients = calloc((size_t)o->clients, sizeof(*q->clients));
    q->rates = calloc((size_t)o->reps, sizeof(*q->rates));
    q->server_us = calloc((size_t)o->reps, sizeof(*q->server_us));
    if (!q->query || !q->base || !q->clients || !q->rates || !q->server_us)
        return -1;
    for (int i = 0; i < o->clients; i++) {
        q->clients[i].q = q;
        q->clients[i].ev = event_new(q->base, -1, 0, client_cb, &q->clients[i]);
        if (!q->clients[i].ev)
            return -1;
    }
    return 0;
}

static void qps_teardown(struct qps *q)
{
    for (int i = 0; q->clients && i < q->o->clients; i++) {
        client_close(&q->clients[i]);
        if (q->clients[i].ev)
            event_free(q->clients[i].ev);
    }
    free(q->clients);
    free(q->rates);
    free(q->server_us);
    free(q->query);
    free(q->answer);
    if (q->base)
        event_base_free(q->base);
}

static bool qps_loop(struct qps *q)
{
    struct timeval warm = {.tv_sec = 0, .tv_usec = (long)(WARMUP_S * 1e6)};
    long us = (long)(q->o->seconds * 1e6);
    q->every = (struct timeval){.tv_sec = us / 1000000, .tv_usec = us % 1000000};
    q->tick = evtimer_new(q->base, tick_cb, q);
    if (!q->tick)
        return false;
    q->rep = -1;
    evtimer_add(q->tick, &warm);
    for (int i = 0; i < q->o->clients; i++)
        client_start(&q->clients[i]);
    event_base_dispatch(q->base);
    event_free(q->tick);
    return q->rep == q->o->reps;
}

static void qps_describe(const struct qps *q, char *buf, size_t len)
{
    const char *over = q->tcp ? "tcp" : "unix socket";
    if (q->bare)
        snprintf(buf, len, "loopback floor: bare connect, accept, close over %s, %d clients", over,
                 q->o->clients);
    else
        snprintf(buf, len, "one-shot queries/s over %s, %d clients, %d rows", over, q->o->clients,
                 q->o->rows);
}

static void qps_report(struct qps *q, bool complete)
{
    char what[160], result[320], num[32], lo[32], hi[32], cpu[64] = "", goals[64] = "reference";
    const struct bench_opts *o = q->o;
    double goal = q->tcp ? 20000 : 40000;
    int n = complete ? o->reps : 0;
    double us = bench_median(q->server_us, (size_t)n), med = bench_median(q->rates, (size_t)n);
    bool valid = complete && !q->failed_rep;
    qps_describe(q, what, sizeof(what));
    if (us >= 0)
        snprintf(cpu, sizeof(cpu), "; %s CPU %.1f µs each", q->bare ? "sink" : "broker", us);
    snprintf(result, sizeof(result), "%s/s (median of %d × %g s; min %s, max %s)%s%s",
             bench_thousands(med, num, sizeof(num)), n, o->seconds,
             bench_thousands(n ? q->rates[0] : 0, lo, sizeof(lo)),
             bench_thousands(n ? q->rates[n - 1] : 0, hi, sizeof(hi)), cpu,
             valid ? "" : "; INVALID: failures");
    if (!q->bare)
        snprintf(goals, sizeof(goals), "≥ %s/s", bench_thousands(goal, num, sizeof(num)));
    const char *verdict = q->bare ? "(floor)" : BENCH_VERDICT(med >= goal);
    bench_row(what, result, goals, valid ? verdict : "INVALID");
}

static int qps_run(const struct bench_opts *o, bool bare, pid_t server_pid)
{
    struct qps q = {.o = o, .bare = bare, .server_pid = server_pid};
    signal(SIGPIPE, SIG_IGN);
    if (qps_setup(&q) != 0) {
        qps_teardown(&q);
        return 1;
    }
    bool complete = qps_loop(&q);
    if (!complete)
        fprintf(stderr, "rdq_bench: stopped: %s\n", q.first_err);
    qps_report(&q, complete);
    qps_teardown(&q);
    return complete && !q.failed_rep ? 0 : 1;
}

int bench_qps(const struct bench_opts *o)
{
    return qps_run(o, false, o->broker_pid);
}

int bench_floor(const struct bench_opts *o)
{
    pid_t sink = bench_sink_spawn(o);
    if (sink < 0)
        return 1;
    int rc = qps_run(o, true, sink);
    kill(sink, SIGKILL);
    waitpid(sink, NULL, 0);
    if (!o->tcp && o->unix_)
        unlink(o->unix_);
    return rc;
}
