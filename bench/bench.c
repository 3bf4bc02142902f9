/* rdq_bench: measures the broker (query rate, registration and removal latency) and rdq's
 * start-up cost. scripts/bench starts a private broker and runs these subcommands; each prints
 * one row of a markdown table on stdout and its details on stderr. */
#include "bench.h"

#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct subcommand {
    const char *name;
    const char *args;
    int (*run)(const struct bench_opts *o);
};

static const struct subcommand subcommands[] = {
    {"qps",
     "--tcp HOST:PORT|--unix PATH [--clients N] [--seconds S] [--reps N] [--rows N] "
     "[--broker-pid PID]",
     bench_qps},
    {"floor",
     "--tcp HOST:PORT|--unix PATH [--clients N] [--seconds S] [--reps N]   (bare "
     "connect, accept, close against a sink of its own)",
     bench_floor},
    {"rows", "--unix PATH [--rows N]   (keeps N rows registered until killed)", bench_rows},
    {"register", "--unix PATH [--samples N]", bench_register},
    {"kill", "--unix PATH --rdsrv PATH --ports LO:HI [--samples N]", bench_kill},
    {"com", "--rdsrv PATH --rdq PATH --baud B [--bytes N]   (a com channel on a paced pty pair)",
     bench_com},
    {"startup",
     "[--reps N] [--samples N] [--max-ms MS] -- COMMAND...   (against /bin/true; with --max-ms "
     "the goal is a median under MS)",
     bench_startup},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage:\n");
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        fprintf(f, "  rdq_bench %s %s\n", subcommands[i].name, subcommands[i].args);
}

int64_t bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double bench_cpu_seconds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid ? (int)pid : (int)getpid());
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_sort(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
}

double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    bench_sort(v, n);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_percentile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    bench_sort(v, n);
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    return v[rank ? rank - 1 : 0];
}

void bench_row(const char *what, const char *result, const char *goal, const char *verdict)
{
    printf("| %s | %s | %s | %s |\n", what, result, goal, verdict);
    fflush(stdout);
}

const char *bench_thousands(double v, char *buf, size_t len)
{
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%.0f", v < 0 ? 0 : v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static int addr_tcp(const char *hostport, struct sockaddr_storage *sa, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof(host))
        return -1;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - hostport), hostport);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
        return -1;
    memcpy(sa, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int bench_addr(const struct bench_opts *o, struct sockaddr_storage *sa, socklen_t *len)
{
    struct sockaddr_un *su = (struct sockaddr_un *)sa;
    memset(sa, 0, sizeof(*sa));
    if (o->tcp && addr_tcp(o->tcp, sa, len) == 0)
        return 0;
    if (!o->tcp && o->unix_ && strlen(o->unix_) < sizeof(su->sun_path)) {
        su->sun_family = AF_UNIX;
        snprintf(su->sun_path, sizeof(su->sun_path), "%s", o->unix_);
        *len = sizeof(*su);
        return 0;
    }
    fprintf(stderr, "rdq_bench: --tcp HOST:PORT or --unix PATH (a usable one) is required\n");
    return -1;
}

/* ---- Arguments ---- */

static int set_number(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = v ? strtod(v, &end) : 0;
    if (!v || *end || d < lo || d > hi) {
        fprintf(stderr, "rdq_bench: %s wants a number from %g to %g\n", flag, lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

static int set_opt(struct bench_opts *o, const char *flag, const char *v)
{
    double d = 0;
    int rc = 0;
    if (strcmp(flag, "--tcp") == 0)
        o->tcp = v;
    else if (strcmp(flag, "--unix") == 0)
        o->unix_ = v;
    else if (strcmp(flag, "--ports") == 0)
        o->ports = v;
    else if (strcmp(flag, "--rdsrv") == 0)
        o->rdsrv = v;
    else if (strcmp(flag, "--rdq") == 0)
        o->rdq = v;
    else if (strcmp(flag, "--baud") == 0 && (rc = set_number(flag, v, 300, 4e6, &d)) == 0)
        o->baud = (unsigned)d;
    else if (strcmp(flag, "--bytes") == 0 && (rc = set_number(flag, v, 1, 1 << 30, &d)) == 0)
        o->bytes = (size_t)d;
    else if (strcmp(flag, "--clients") == 0 && (rc = set_number(flag, v, 1, 4096, &d)) == 0)
        o->clients = (int)d;
    else if (strcmp(flag, "--seconds") == 0 && (rc = set_number(flag, v, 0.1, 600, &d)) == 0)
        o->seconds = d;
    else if (strcmp(flag, "--reps") == 0 && (rc = set_number(flag, v, 1, 100, &d)) == 0)
        o->reps = (int)d;
    else if (strcmp(flag, "--samples") == 0 && (rc = set_number(flag, v, 1, 1e6, &d)) == 0)
        o->samples = (int)d;
    else if (strcmp(flag, "--rows") == 0 && (rc = set_number(flag, v, 0, 4096, &d)) == 0)
        o->rows = (int)d;
    else if (strcmp(flag, "--max-ms") == 0 && (rc = set_number(flag, v, 0.1, 1e5, &d)) == 0)
        o->max_ms = d;
    else if (strcmp(flag, "--broker-pid") == 0 && (rc = set_number(flag, v, 1, 1 << 30, &d)) == 0)
        o->broker_pid = (pid_t)d;
    else if (rc == 0) {
        fprintf(stderr, "rdq_bench: unknown option \"%s\"\n", flag);
        rc = -1;
    }
    return rc;
}

static int parse_args(struct bench_opts *o, int argc, char **argv)
{
    for (int i = 2; i < argc; i += 2) { /* flags and their values */
        if (strcmp(argv[i], "--") == 0) {
            o->cmd = argv + i + 1;
            return argv[i + 1] ? 0 : -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "rdq_bench: %s needs a value\n", argv[i]);
            return -1;
        }
        if (set_opt(o, argv[i], argv[i + 1]))
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct bench_opts o = {.clients = 64, .seconds = 3, .reps = 5, .samples = 0, .rows = 10};
    if (argc < 2 || strcmp(argv[1], "-?") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        if (strcmp(argv[1], subcommands[i].name) != 0)
            continue;
        if (parse_args(&o, argc, argv) != 0)
            return 2;
        return subcommands[i].run(&o);
    }
    fprintf(stderr, "rdq_bench: unknown subcommand \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
