/* The broker's rows for the other measurements, and how fast a listing follows a change:
 * registration to visible, and a SIGKILLed server to gone. Both poll with one-shot queries back
 * to back over the broker's unix socket, the way `rdq -QR localhost` asks (rdd_query). */
#include "bench.h"
#include "discover.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define QUERY_TIMEOUT_MS 2000
#define LISTED_TIMEOUT_US 5000000 /* a server must appear (or go) within this */

/* Queries the broker of $RDQ_BROKER_SOCK as rdq does; sets *found when a row has `desc`.
 * Returns 0, or -1 with the reason in err. */
static int listed(const char *desc, bool *found, char *err, size_t errlen)
{
    struct rdd_result r;
    rdd_query("localhost", 0, RDB_FILTER_ALL, QUERY_TIMEOUT_MS, &r);
    *found = false;
    for (size_t i = 0; desc && i < r.nrows; i++)
        *found |= strcmp(r.rows[i].desc, desc) == 0;
    int rc = r.status == RDD_OK ? 0 : -1;
    if (rc)
        snprintf(err, errlen, "query failed (status %d): %s", (int)r.status, r.err);
    rdd_result_free(&r);
    return rc;
}

static int need_unix(const struct bench_opts *o, const char *cmd)
{
    if (!o->unix_) {
        fprintf(stderr, "rdq_bench %s: --unix PATH (the broker's socket) is required\n", cmd);
        return -1;
    }
    setenv("RDQ_BROKER_SOCK", o->unix_, 1); /* where rdd_query asks for "localhost" */
    return 0;
}

/* Queries back to back until the row with `desc` is there (want true) or gone (want false).
 * Returns the time of the answer that showed it, or -1 with the reason in err. */
static int64_t poll_until(const char *desc, bool want, int64_t pause_us, int *polls, char *err,
                          size_t errlen)
{
    int64_t deadline = bench_now_us() + LISTED_TIMEOUT_US;
    for (*polls = 1;; ++*polls) {
        bool found;
        if (listed(desc, &found, err, errlen) != 0)
            return -1;
        int64_t now = bench_now_us();
        if (found == want)
            return now;
        if (now > deadline) {
            snprintf(err, errlen, "%s still %s after %d s", desc, want ? "not listed" : "listed",
                     LISTED_TIMEOUT_US / 1000000);
            return -1;
        }
        if (pause_us)
            usleep((useconds_t)pause_us);
    }
}

static void report_latency(const char *what, double *ms, int n, double goal_p99_ms,
                           const char *goal)
{
    char result[160];
    double p50 = bench_percentile(ms, (size_t)n, 50), p99 = bench_percentile(ms, (size_t)n, 99);
    snprintf(result, sizeof(result), "p50 %.3f ms, p99 %.3f ms, max %.3f ms (%d samples)", p50, p99,
             ms[n - 1], n);
    bench_row(what, result, goal, BENCH_VERDICT(p99 <= goal_p99_ms));
}

/* ---- rows: keeps N registrations until killed ---- */

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static void note(const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "rdq_bench rows: %s\n", msg);
}

static int announce_rows(struct event_base *base, struct rdb_announce **rows, int n)
{
    for (int i = 0; i < n; i++) {
        struct rdb_entry e = {.kind = RDB_PROCESS};
        snprintf(e.advert, sizeof(e.advert), "tcp:Port=%d", 60001 + i);
        snprintf(e.desc, sizeof(e.desc), "bench row %d", i + 1);
        if (rdb_announce_open(&rows[i], base, NULL, &e, note, NULL) != 0 ||
            !rdb_announce_registered(rows[i]))
            return -1;
    }
    return 0;
}

int bench_rows(const struct bench_opts *o)
{
    if (need_unix(o, "rows"))
        return 2;
    struct event_base *base = event_base_new();
    struct rdb_announce **rows = calloc((size_t)o->rows + 1, sizeof(*rows));
    struct event *sigs[2] = {evsignal_new(base, SIGTERM, on_stop, base),
                             evsignal_new(base, SIGINT, on_stop, base)};
    int rc = announce_rows(base, rows, o->rows);
    if (rc == 0) {
        event_add(sigs[0], NULL);
        event_add(sigs[1], NULL);
        event_base_dispatch(base);
    } else {
        fprintf(stderr, "rdq_bench rows: cannot register with the broker on %s\n", o->unix_);
    }
    for (int i = 0; i < o->rows; i++)
        rdb_announce_free(rows[i]);
    free(rows);
    event_free(sigs[0]);
    event_free(sigs[1]);
    event_base_free(base);
    return rc ? 1 : 0;
}

/* ---- register: start of a registration to the first listing that shows it ---- */

struct reg_samples {
    double *total, *announce; /* ms: to the listing that shows it; to REGISTERED */
    int first_query;          /* samples listed by the first query after REGISTERED */
};

static int register_once(struct event_base *base, int i, struct reg_samples *s, char *err,
                         size_t errlen)
{
    struct rdb_entry e = {.kind = RDB_PROCESS};
    snprintf(e.advert, sizeof(e.advert), "tcp:Port=%d", 50000 + i % 10000);
    snprintf(e.desc, sizeof(e.desc), "bench registration %d", i);
    struct rdb_announce *a = NULL;
    int polls = 0, gone_polls;
    int64_t t0 = bench_now_us();
    if (rdb_announce_open(&a, base, NULL, &e, NULL, NULL) != 0 || !rdb_announce_registered(a)) {
        snprintf(err, errlen, "registration %d failed", i);
        rdb_announce_free(a);
        return -1;
    }
    int64_t t_reg = bench_now_us(), t1 = poll_until(e.desc, true, 0, &polls, err, errlen);
    rdb_announce_free(a); /* the record goes with its connection */
    if (t1 < 0 || poll_until(e.desc, false, 0, &gone_polls, err, errlen) < 0)
        return -1;
    s->total[i] = (double)(t1 - t0) / 1000.0;
    s->announce[i] = (double)(t_reg - t0) / 1000.0;
    s->first_query += polls == 1;
    return 0;
}

static void register_details(struct reg_samples *s, int n)
{
    fprintf(stderr,
            "  registration: rdb_announce_open (dial, handshake, REGISTER, REGISTERED) p50 %.3f "
            "ms, p99 %.3f ms; listed by the first query after it in %d of %d samples\n",
            bench_percentile(s->announce, (size_t)n, 50),
            bench_percentile(s->announce, (size_t)n, 99), s->first_query, n);
}

int bench_register(const struct bench_opts *o)
{
    int n = o->samples ? o->samples : 200, i = 0;
    struct reg_samples s = {.total = calloc((size_t)n, sizeof(double)),
                            .announce = calloc((size_t)n, sizeof(double))};
    struct event_base *base = event_base_new();
    char err[2 * RDT_ERR_MAX] = "";
    if (need_unix(o, "register") == 0 && s.total && s.announce && base)
        for (; i < n && register_once(base, i, &s, err, sizeof(err)) == 0; i++)
            ;
    if (i < n) {
        fprintf(stderr, "rdq_bench register: %s\n", err);
    } else {
        register_details(&s, n);
        report_latency("registration to visible (rdb_announce_open, then queries over the unix "
                       "socket back to back)",
                       s.total, n, 1.0, "p99 ≤ 1 ms");
    }
    free(s.total);
    free(s.announce);
    if (base)
        event_base_free(base);
    return i < n ? 1 : 0;
}

/* ---- kill: a real rdsrv SIGKILLed, to the first listing without it ---- */

static volatile pid_t child_pid; /* the rdsrv alive now, killed if we are stopped */

static void on_signal(int sig)
{
    if (child_pid > 0)
        kill(child_pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static pid_t spawn_rdsrv(const struct bench_opts *o, const char *desc)
{
    char transport[64];
    snprintf(transport, sizeof(transport), "tcp:port=%s", o->ports);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the harness */
    int null = open("/dev/null", O_RDWR);
    dup2(null, 1);
    dup2(null, 2);
    execl(o->rdsrv, "rdsrv", "-t", transport, "-stub", "cat", "-desc", desc, (char *)NULL);
    _exit(127);
}

/* One sample: ms from SIGKILL to the first listing without it; *stale counts the queries that
 * still listed it. */
static double kill_once(const struct bench_opts *o, int i, int *stale, char *err, size_t errlen)
{
    char desc[64];
    snprintf(desc, sizeof(desc), "bench kill %d", i);
    pid_t pid = spawn_rdsrv(o, desc);
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    child_pid = pid;
    int polls = 0;
    int64_t t1 = -1, t0 = poll_until(desc, true, 200, &polls, err, errlen);
    if (t0 >= 0) {
        t0 = bench_now_us();
        kill(pid, SIGKILL);
        t1 = poll_until(desc, false, 0, &polls, err, errlen);
        *stale = polls - 1;
    } else {
        kill(pid, SIGKILL);
    }
    waitpid(pid, NULL, 0);
    child_pid = 0;
    return t1 < 0 ? -1 : (double)(t1 - t0) / 1000.0;
}

int bench_kill(const struct bench_opts *o)
{
    if (need_unix(o, "kill") || !o->rdsrv || !o->ports) {
        fprintf(stderr, "rdq_bench kill: --rdsrv PATH and --ports LO:HI are required\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int n = o->samples ? o->samples : 100, i = 0;
    double *ms = calloc((size_t)n, sizeof(*ms));
    char err[2 * RDT_ERR_MAX] = "";
    int stale = 0, stale_sum = 0, stale_max = 0;
    for (; ms && i < n && (ms[i] = kill_once(o, i, &stale, err, sizeof(err))) >= 0; i++) {
        stale_sum += stale;
        stale_max = stale > stale_max ? stale : stale_max;
    }
    if (i < n) {
        fprintf(stderr, "rdq_bench kill: sample %d: %s\n", i, err);
    } else {
        fprintf(stderr,
                "  kill: queries that still listed the killed server: %.1f on average, "
                "at most %d\n",
                (double)stale_sum / n, stale_max);
        report_latency("SIGKILL of a registered rdsrv to gone (queries over the unix socket back "
                       "to back)",
                       ms, n, 10.0, "p99 ≤ 10 ms");
    }
    free(ms);
    return i < n ? 1 : 0;
}
