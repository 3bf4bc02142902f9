/* Whole-process time of a command (normally `rdq -QR localhost`) next to /bin/true, spawned the
 * same way (posix_spawn, stdout to /dev/null) and interleaved run by run so that both see the
 * same machine. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Runs argv once with stdout to `out_fd` (-1: /dev/null); the wall time in ms, or -1. */
static double run_once(char **argv, int out_fd)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (out_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int st = 0;
    int64_t t0 = bench_now_us();
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    if (rc == 0 && waitpid(pid, &st, 0) != pid)
        rc = errno;
    int64_t t1 = bench_now_us();
    posix_spawn_file_actions_destroy(&fa);
    if (rc || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    return (double)(t1 - t0) / 1000.0;
}

/* Runs the command once into a file and counts the rows of its listing (lines after the first). */
static int count_rows(char **argv)
{
    char path[] = "/tmp/rdq-bench-out-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    int rows = -1, lines = 0;
    FILE *f = run_once(argv, fd) >= 0 ? fdopen(dup(fd), "r") : NULL;
    if (f) {
        char line[4096];
        rewind(f);
        while (fgets(line, sizeof(line), f))
            lines++;
        fclose(f);
        rows = lines ? lines - 1 : 0;
    }
    close(fd);
    return rows;
}

struct series {
    double *ms;
    int n;
    double mean, median;
};

static void summarize(struct series *s)
{
    double sum = 0;
    for (int i = 0; i < s->n; i++)
        sum += s->ms[i];
    s->mean = s->n ? sum / s->n : 0;
    s->median = bench_median(s->ms, (size_t)s->n);
}

static void report(const struct bench_opts *o, struct series *cmd, struct series *tru)
{
    char what[256] = "", result[256];
    for (char **a = o->cmd; *a && strlen(what) < 150; a++)
        snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s%s", a == o->cmd ? "" : " ",
                 a == o->cmd && strrchr(*a, '/') ? strrchr(*a, '/') + 1 : *a);
    snprintf(what + strlen(what), sizeof(what) - strlen(what), " vs /bin/true, whole process");
    summarize(cmd);
    summarize(tru);
    double ratio = cmd->median / tru->median;
    snprintf(result, sizeof(result),
             "%.2f ms mean, %.2f ms median; /bin/true %.2f ms mean, %.2f ms median; "
             "ratio %.1f× (median), %.1f× (mean); %d runs each",
             cmd->mean, cmd->median, tru->mean, tru->median, ratio, cmd->mean / tru->mean, cmd->n);
    if (o->max_ms > 0) {
        char goal[64];
        snprintf(goal, sizeof(goal), "< %g ms (median)", o->max_ms);
        bench_row(what, result, goal, BENCH_VERDICT(cmd->median < o->max_ms));
    } else {
        bench_row(what, result, "≤ 3× /bin/true", BENCH_VERDICT(ratio <= 3.0));
    }
}

int bench_startup(const struct bench_opts *o)
{
    char *tru_argv[] = {"/bin/true", NULL};
    int runs = (o->samples ? o->samples : 100) * o->reps;
    if (!o->cmd) {
        fprintf(stderr, "rdq_bench startup: the command goes after --\n");
        return 2;
    }
    int rows = count_rows(o->cmd);
    if (rows != o->rows) {
        fprintf(stderr, "rdq_bench startup: %s listed %d rows, not %d\n", o->cmd[0], rows, o->rows);
        return 1;
    }
    struct series cmd = {.ms = calloc((size_t)runs, sizeof(double))};
    struct series tru = {.ms = calloc((size_t)runs, sizeof(double))};
    int i = 0;
    for (int w = 0; w < 10; w++) /* warm the page cache and the dynamic loader's */
        run_once(o->cmd, -1), run_once(tru_argv, -1);
    for (; cmd.ms && tru.ms && i < runs; i++)
        if ((tru.ms[i] = run_once(tru_argv, -1)) < 0 || (cmd.ms[i] = run_once(o->cmd, -1)) < 0)
            break;
    cmd.n = tru.n = i;
    if (i == runs)
        report(o, &cmd, &tru);
    else
        fprintf(stderr, "rdq_bench startup: run %d failed\n", i + 1);
    free(cmd.ms);
    free(tru.ms);
    return i == runs ? 0 : 1;
}
