/* rdq_bench: the benchmark harness's shared helpers (scripts/bench drives the subcommands). */
#ifndef RDQ_BENCH_H
#define RDQ_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Options shared by the subcommands; each reads the ones it needs. */
struct bench_opts {
    const char *tcp;   /* --tcp HOST:PORT */
    const char *unix_; /* --unix PATH: the broker's registration socket */
    int clients;       /* --clients N */
    double seconds;    /* --seconds S: one repetition of a rate measurement */
    int reps;          /* --reps N */
    int samples;       /* --samples N: latency samples */
    int rows;          /* --rows N: rows the broker must list */
    const char *ports; /* --ports LO:HI: rdsrv's port range */
    const char *rdsrv; /* --rdsrv PATH */
    pid_t broker_pid;  /* --broker-pid PID: for its CPU time */
    double max_ms;     /* --max-ms MS: startup's goal is a median under MS, not a ratio */
    const char *rdq;   /* --rdq PATH */
    unsigned baud;     /* --baud B */
    size_t bytes;      /* --bytes N */
    char **cmd;        /* after --: a command line */
};

/* The address of --tcp HOST:PORT or --unix PATH; -1 (and a message) when neither is usable. */
int bench_addr(const struct bench_opts *o, struct sockaddr_storage *sa, socklen_t *len);
/* Forks a sink that accepts connections on that address and closes them at once. */
pid_t bench_sink_spawn(const struct bench_opts *o);

/* Microseconds since an arbitrary start (CLOCK_MONOTONIC). */
int64_t bench_now_us(void);
/* CPU seconds (user and system) used so far by `pid` (0: this process); -1 if unknown. */
double bench_cpu_seconds(pid_t pid);

/* Sorts `v` in place; then the median, and the nearest-rank percentile `p` (0..100). */
void bench_sort(double *v, size_t n);
double bench_median(double *v, size_t n);
double bench_percentile(double *v, size_t n, double p);

/* Writes one row of the results table (markdown) to stdout; the verdict is PASS, MISS or a note. */
void bench_row(const char *what, const char *result, const char *goal, const char *verdict);
#define BENCH_VERDICT(pass) ((pass) ? "PASS" : "MISS")

/* Formats `v` with thousands separators. */
const char *bench_thousands(double v, char *buf, size_t len);

/* The subcommands. */
int bench_qps(const struct bench_opts *o);
int bench_floor(const struct bench_opts *o);
int bench_rows(const struct bench_opts *o);
int bench_register(const struct bench_opts *o);
int bench_kill(const struct bench_opts *o);
int bench_startup(const struct bench_opts *o);
int bench_com(const struct bench_opts *o);

#endif
