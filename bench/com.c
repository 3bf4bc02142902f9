/* Throughput of a com channel next to its line's raw rate, in the same run. The line is two
 * pseudo-terminal pairs joined by a thread that carries at most baud / 10 bytes a second each
 * way (8N1: ten bits a byte), as a serial cable at that rate does; a pty alone has no rate. Raw:
 * --bytes written into one end until the last of them is read at the other. rdq: the same bytes
 * through `rdq -premote com:...` to `rdsrv -t com:... -stub` that swallows them and says "done";
 * then again with a second channel of the line busy both ways. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

extern char **environ;

struct cable {
    int m[2], s[2]; /* masters, slaves (kept open) */
    char name[2][64];
    double bytes_per_s;
    int stop[2];
    pthread_t thread;
};

/* Moves what one master has to the other, paced: a budget of bytes that grows with time. */
static void *pace(void *arg)
{
    struct cable *c = arg;
    double budget[2] = {0, 0};
    int64_t last = bench_now_us();
    unsigned char buf[4096];
    for (;;) {
        struct pollfd p[3] = {{.fd = c->m[0], .events = POLLIN},
                              {.fd = c->m[1], .events = POLLIN},
                              {.fd = c->stop[0], .events = POLLIN}};
        if (poll(p, 3, 1) < 0 && errno != EINTR)
            break;
        if (p[2].revents)
            break;
        int64_t now = bench_now_us();
        for (int d = 0; d < 2; d++) {
            budget[d] += c->bytes_per_s * (double)(now - last) / 1e6;
            if (budget[d] > 512) /* a line has no credit to spend later */
                budget[d] = 512;
            if (budget[d] < 1 || !(p[d].revents & POLLIN))
                continue;
            size_t want = (size_t)budget[d] < sizeof(buf) ? (size_t)budget[d] : sizeof(buf);
            ssize_t n = read(c->m[d], buf, want);
            if (n <= 0)
                continue;
            budget[d] -= (double)n;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(c->m[1 - d], buf + off, (size_t)(n - off));
                if (w > 0)
                    off += w;
                else
                    poll(&(struct pollfd){.fd = c->m[1 - d], .events = POLLOUT}, 1, 10);
            }
        }
        last = now;
    }
    return NULL;
}

static int cable_open(struct cable *c, unsigned baud)
{
    struct termios raw;
    memset(&raw, 0, sizeof(raw));
    cfmakeraw(&raw);
    for (int i = 0; i < 2; i++) {
        if (openpty(&c->m[i], &c->s[i], c->name[i], &raw, NULL) < 0)
            return -1;
        fcntl(c->m[i], F_SETFL, O_NONBLOCK);
        fcntl(c->m[i], F_SETFD, FD_CLOEXEC);
        fcntl(c->s[i], F_SETFD, FD_CLOEXEC);
    }
    c->bytes_per_s = baud / 10.0;
    if (pipe(c->stop) < 0 || pthread_create(&c->thread, NULL, pace, c) != 0)
        return -1;
    return 0;
}

static void cable_close(struct cable *c)
{
    if (write(c->stop[1], "x", 1) == 1)
        pthread_join(c->thread, NULL);
    for (int i = 0; i < 2; i++)
        close(c->m[i]), close(c->s[i]);
}

/* Seconds for `n` bytes written into slave 0 to be read at slave 1. */
static double raw_seconds(struct cable *c, size_t n)
{
    int w = open(c->name[0], O_WRONLY | O_NOCTTY), r = open(c->name[1], O_RDONLY | O_NOCTTY);
    static unsigned char buf[4096];
    memset(buf, 'r', sizeof(buf));
    int64_t t0 = bench_now_us();
    pid_t pid = fork();
    if (pid == 0) {
        for (size_t off = 0; off < n;) {
            ssize_t k = write(w, buf, n - off < sizeof(buf) ? n - off : sizeof(buf));
            if (k <= 0)
                _exit(1);
            off += (size_t)k;
        }
        _exit(0);
    }
    size_t got = 0;
    unsigned char in[4096];
    while (got < n) {
        ssize_t k = read(r, in, sizeof(in));
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    double s = (double)(bench_now_us() - t0) / 1e6;
    waitpid(pid, NULL, 0);
    close(w);
    close(r);
    return got == n ? s : -1;
}

static pid_t spawn(char *const argv[], int in, int out)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc ? -1 : pid;
}

/* Sends `n` bytes through rdq -premote to a stub that swallows them and says done; seconds. */
static double rdq_seconds(const struct bench_opts *o, const char *dev, unsigned baud, int chan,
                          size_t n)
{
    char t[160];
    snprintf(t, sizeof(t), "com:port=%s,baud=%u,channel=%d", dev, baud, chan);
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0)
        return -1;
    char *argv[] = {(char *)o->rdq, "-premote", t, "-timeout", "20000", NULL};
    pid_t pid = spawn(argv, in[0], out[1]);
    close(in[0]);
    close(out[1]);
    static unsigned char buf[4096];
    memset(buf, 'd', sizeof(buf));
    int64_t t0 = bench_now_us();
    signal(SIGPIPE, SIG_IGN);
    for (size_t off = 0; pid > 0 && off < n;) {
        ssize_t k = write(in[1], buf, n - off < sizeof(buf) ? n - off : sizeof(buf));
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    char said[16] = "";
    ssize_t k = pid > 0 ? read(out[0], said, sizeof(said) - 1) : -1;
    double s = (double)(bench_now_us() - t0) / 1e6;
    close(in[1]);
    close(out[0]);
    if (pid > 0)
        kill(pid, SIGTERM), waitpid(pid, NULL, 0);
    return k > 0 && strncmp(said, "done", 4) == 0 ? s : -1;
}

static pid_t serve(const struct bench_opts *o, const char *dev, unsigned baud, int chan,
                   const char *stub)
{
    char t[160];
    snprintf(t, sizeof(t), "com:port=%s,baud=%u,channel=%d", dev, baud, chan);
    char *argv[] = {(char *)o->rdsrv, "-t", t, "-stub", (char *)stub, NULL};
    int null = open("/dev/null", O_RDWR);
    pid_t pid = spawn(argv, null, null);
    close(null);
    usleep(300 * 1000); /* its line owner comes up */
    return pid;
}

int bench_com(const struct bench_opts *o)
{
    if (!o->rdsrv || !o->rdq || !o->baud) {
        fprintf(stderr, "rdq_bench com: --rdsrv, --rdq and --baud are needed\n");
        return 2;
    }
    size_t n = o->bytes ? o->bytes : 1 << 20;
    struct cable c;
    memset(&c, 0, sizeof(c));
    if (cable_open(&c, o->baud) < 0) {
        fprintf(stderr, "rdq_bench com: no pseudo-terminals\n");
        return 1;
    }
    char stub[96];
    snprintf(stub, sizeof(stub), "sh -c 'head -c %zu >/dev/null; echo done'", n);
    pid_t s3 = serve(o, c.name[0], o->baud, 3, stub);
    pid_t s7 = serve(o, c.name[0], o->baud, 7, "cat");
    double raw = raw_seconds(&c, n);
    double one = rdq_seconds(o, c.name[1], o->baud, 3, n);
    /* channel 7 busy both ways: a client that keeps sending, its echo coming back */
    char t7[160];
    snprintf(t7, sizeof(t7), "com:port=%s,baud=%u,channel=7", c.name[1], o->baud);
    int zero = open("/dev/zero", O_RDONLY), null = open("/dev/null", O_WRONLY);
    char *argv7[] = {(char *)o->rdq, "-premote", t7, NULL};
    pid_t busy = spawn(argv7, zero, null);
    close(zero);
    close(null);
    usleep(300 * 1000);
    double shared = rdq_seconds(o, c.name[1], o->baud, 3, n);
    kill(busy, SIGTERM);
    waitpid(busy, NULL, 0);
    kill(s3, SIGTERM), waitpid(s3, NULL, 0);
    kill(s7, SIGTERM), waitpid(s7, NULL, 0);
    usleep(400 * 1000); /* the owners end before the cable goes */
    cable_close(&c);
    if (raw <= 0 || one <= 0 || shared <= 0) {
        fprintf(stderr,
                "rdq_bench com: a transfer failed (raw %.2f s, rdq %.2f s, shared %.2f s)\n", raw,
                one, shared);
        return 1;
    }
    char what[160], result[320];
    double frac = raw / one, frac_shared = raw / shared;
    snprintf(what, sizeof(what),
             "com channel, %zu KiB one way on a pty pair paced at %u baud (8N1), next to the raw "
             "line",
             n / 1024, o->baud);
    snprintf(result, sizeof(result),
             "%.1f KB/s = %.1f %% of the raw %.1f KB/s (overhead %.1f %%); with a second channel "
             "busy both ways: %.1f KB/s (%.1f %%)",
             (double)n / one / 1e3, 100 * frac, (double)n / raw / 1e3, 100 * (1 - frac),
             (double)n / shared / 1e3, 100 * frac_shared);
    bench_row(what, result, "overhead under 5 %", BENCH_VERDICT(frac >= 0.95));
    return 0;
}
