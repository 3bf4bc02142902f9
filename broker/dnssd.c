/* The broker on the LAN: what it publishes is published by a process of its own (dnssd_int.h,
 * dnssd_avahi.c), forked on the loop's first turn (after rdbroker has dropped its privileges)
 * and dying with the broker. The broker sends it the servers to publish whenever they change,
 * and never waits for it: a state that does not fit in the socket is finished when the socket
 * is writable, and the changes meanwhile are sent as one state after it. A process that ends is
 * started again, after a delay that doubles up to BACKOFF_MAX_MS. */
#include "dnssd.h"
#include "dnssd_int.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MS 1000      /* the first delay before a process is started again */
#define BACKOFF_MAX_MS 30000 /* ... doubling up to this; a process that lived as long resets it */
#define READS_PER_TURN 16    /* the process's messages read a loop turn, at most */

struct rdb_dnssd {
    struct rdb_broker *b;
    const struct rdb_config *cfg;
    struct rdb_service_info self;
    bool have_self; /* the broker itself is published */
    pid_t pid;      /* the publishing process (0: none) */
    pid_t zombie;   /* one that ended but was not reaped yet (0: none) */
    long started;   /* when it was, in ms */
    int backoff_ms;
    int fd; /* its socket (-1: none) */
    struct event *rev, *wev;
    struct event *sync;  /* the servers changed: sent on the loop's next turn */
    struct event *spawn; /* the next process */
    uint8_t *out;        /* the state being sent, and how much of it is */
    size_t outlen, outoff;
    bool dirty; /* the servers changed since `out` was made */
    uint8_t in[RDB_DNSSD_HDR + 1 + RDB_DNSSD_LOG_MAX];
    size_t inlen;
};

#define say(d, prio, ...) rdb_logf((d)->cfg->log, (d)->cfg->log_arg, prio, __VA_ARGS__)

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* ---- The state ---- */

struct buf {
    uint8_t *p;
    size_t len, cap;
    bool failed;
};

static void put(struct buf *b, const void *data, size_t len)
{
    if (b->failed)
        return;
    if (b->cap - b->len < len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < len)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void put_entry(unsigned id, const struct rdb_entry *e, void *arg)
{
    uint32_t id32 = id;
    uint8_t kind = (uint8_t)e->kind;
    uint16_t len = (uint16_t)strnlen(e->advert, sizeof(e->advert) - 1);
    put(arg, &id32, 4);
    put(arg, &kind, 1);
    put(arg, &len, 2);
    put(arg, e->advert, len);
}

static void flush(struct rdb_dnssd *d);

/* The broker's servers now, sent whole. */
static void send_state(struct rdb_dnssd *d)
{
    struct buf b = {0};
    uint8_t hdr[RDB_DNSSD_HDR] = {0, 0, 0, 0, RDB_DNSSD_STATE};
    put(&b, hdr, sizeof(hdr));
    rdb_broker_each_listed(d->b, put_entry, &b);
    d->dirty = false;
    if (b.failed) {
        free(b.p);
        say(d, LOG_WARNING, "DNS-SD: out of memory; the published servers follow later");
        d->dirty = true; /* sent with the next change */
        return;
    }
    uint32_t len = (uint32_t)(b.len - RDB_DNSSD_HDR);
    memcpy(b.p, &len, 4);
    free(d->out);
    d->out = b.p;
    d->outlen = b.len;
    d->outoff = 0;
    flush(d);
}

/* Sends what is left of the state, as much as the socket takes; then the latest, if it changed. */
static void flush(struct rdb_dnssd *d)
{
    while (d->outoff < d->outlen) {
        ssize_t n =
            send(d->fd, d->out + d->outoff, d->outlen - d->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(d->wev, NULL);
            return;
        }
        if (n <= 0) {
            d->outoff = d->outlen; /* the process is gone: its socket's end says so */
            break;
        }
        d->outoff += (size_t)n;
    }
    event_del(d->wev);
    free(d->out);
    d->out = NULL;
    d->outlen = d->outoff = 0;
    if (d->dirty)
        send_state(d);
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

static void sync_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdb_dnssd *d = arg;
    if (d->fd < 0)
        return; /* the next process gets the state when it starts */
    if (d->out)
        d->dirty = true; /* after the one being sent */
    else
        send_state(d);
}

/* ---- The process ---- */

static void spawn_later(struct rdb_dnssd *d, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(d->spawn, &tv);
}

static void reap(pid_t *pid, int *status)
{
    if (*pid > 0 && waitpid(*pid, status, WNOHANG) == *pid)
        *pid = 0;
}

/* The process ended (its socket did, or said what it should not): said once, started again
 * after the back-off. */
static void child_gone(struct rdb_dnssd *d)
{
    event_free(d->rev);
    event_free(d->wev);
    d->rev = d->wev = NULL;
    close(d->fd);
    d->fd = -1;
    free(d->out);
    d->out = NULL;
    d->outlen = d->outoff = 0;
    d->inlen = 0;
    if (d->pid > 0)
        kill(d->pid, SIGKILL);
    int status = 0;
    pid_t pid = d->pid;
    reap(&d->pid, &status);
    char how[64] = "";
    if (d->pid == 0 && WIFEXITED(status))
        snprintf(how, sizeof(how), " with status %d", WEXITSTATUS(status));
    else if (d->pid == 0 && WIFSIGNALED(status))
        snprintf(how, sizeof(how), " by signal %d", WTERMSIG(status));
    d->zombie = d->pid; /* reaped later */
    d->pid = 0;
    if (now_ms() - d->started >= BACKOFF_MAX_MS)
        d->backoff_ms = BACKOFF_MS;
    say(d, LOG_WARNING, "DNS-SD: the publishing process (%d) ended%s; another in %d ms", (int)pid,
        how, d->backoff_ms);
    spawn_later(d, d->backoff_ms);
    d->backoff_ms = d->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d->backoff_ms * 2;
}

/* The process's log messages, for the broker's log. */
static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct rdb_dnssd *d = arg;
    for (int r = 0; r < READS_PER_TURN; r++) {
        ssize_t n = recv(fd, d->in + d->inlen, sizeof(d->in) - d->inlen, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            child_gone(d);
            return;
        }
        d->inlen += (size_t)n;
        size_t off = 0;
        uint32_t len;
        while (d->inlen - off >= RDB_DNSSD_HDR) {
            memcpy(&len, d->in + off, 4);
            if (d->in[off + 4] != RDB_DNSSD_LOG || len < 1 || len > 1 + RDB_DNSSD_LOG_MAX) {
                child_gone(d);
                return;
            }
            if (d->inlen - off - RDB_DNSSD_HDR < len)
                break;
            const uint8_t *m = d->in + off + RDB_DNSSD_HDR;
            say(d, m[0] & LOG_PRIMASK, "%.*s", (int)(len - 1), (const char *)m + 1);
            off += RDB_DNSSD_HDR + len;
        }
        memmove(d->in, d->in + off, d->inlen - off);
        d->inlen -= off;
    }
}

/* In the new process: dies with the broker, keeps none of the broker's descriptors (its peers
 * would not see them closed) nor its signal handlers. */
_Noreturn static void child_start(struct rdb_dnssd *d, pid_t parent, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(0);
    prctl(PR_SET_NAME, "rdbroker-dnssd");
    static const int sigs[] = {SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL); /* the broker's, libevent's: not this process's */
    signal(SIGINT, SIG_IGN);      /* a terminal's ^C is for the broker, which then ends this */
    signal(SIGQUIT, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(fd, 3) < 0)
        _exit(1);
    if (close_range(4, ~0U, 0) != 0) { /* an older kernel: one by one */
        struct rlimit rl = {.rlim_cur = 1024};
        getrlimit(RLIMIT_NOFILE, &rl);
        for (rlim_t i = 4; i < rl.rlim_cur && i < 65536; i++)
            close((int)i);
    }
    rdb_dnssd_child(3, d->have_self ? &d->self : NULL, d->cfg->publish_servers);
}

static void spawn_cb(evutil_socket_t fd_, short what, void *arg)
{
    (void)fd_;
    (void)what;
    struct rdb_dnssd *d = arg;
    reap(&d->zombie, &(int){0});
    if (d->zombie) { /* killed but not gone yet: one at a time */
        spawn_later(d, BACKOFF_MS);
        return;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        say(d, LOG_WARNING, "DNS-SD: cannot start the publishing process: %s", strerror(errno));
        spawn_later(d, BACKOFF_MAX_MS);
        return;
    }
    pid_t parent = getpid(), pid = fork();
    if (pid == 0)
        child_start(d, parent, sv[1]);
    close(sv[1]);
    if (pid < 0 || fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0 ||
        !(d->rev = event_new(event_get_base(d->spawn), sv[0], EV_READ | EV_PERSIST, read_cb, d)) ||
        !(d->wev = event_new(event_get_base(d->spawn), sv[0], EV_WRITE, write_cb, d)) ||
        event_add(d->rev, NULL) != 0) {
        say(d, LOG_WARNING, "DNS-SD: cannot start the publishing process: %s",
            strerror(pid < 0 ? errno : ENOMEM));
        if (d->rev)
            event_free(d->rev);
        if (d->wev)
            event_free(d->wev);
        d->rev = d->wev = NULL;
        close(sv[0]);
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        spawn_later(d, BACKOFF_MAX_MS);
        return;
    }
    d->pid = pid;
    d->fd = sv[0];
    d->started = now_ms();
    if (d->cfg->publish_servers)
        send_state(d);
}

/* ---- Life cycle ---- */

int rdb_dnssd_open(struct rdb_dnssd **out, struct rdb_broker *b, struct event_base *base,
                   const struct rdb_config *cfg)
{
    *out = NULL;
    struct rdb_dnssd *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->b = b;
    d->cfg = cfg;
    d->fd = -1;
    d->backoff_ms = BACKOFF_MS;
    d->sync = event_new(base, -1, 0, sync_cb, d);
    d->spawn = evtimer_new(base, spawn_cb, d);
    if (!d->sync || !d->spawn) {
        rdb_dnssd_free(d);
        return -ENOMEM;
    }
    if (rdb_broker_service(b, &d->self) == 0)
        d->have_self = true;
    else
        say(d, LOG_NOTICE,
            "DNS-SD: no plain tcp query endpoint (without a password) to "
            "publish: the broker itself is not on the LAN");
    spawn_later(d, 0); /* on the loop: after the caller has dropped its privileges */
    *out = d;
    return 0;
}

void rdb_dnssd_changed(struct rdb_dnssd *d)
{
    if (d && d->cfg->publish_servers)
        event_active(d->sync, EV_TIMEOUT, 0);
}

void rdb_dnssd_free(struct rdb_dnssd *d)
{
    if (!d)
        return;
    if (d->rev)
        event_free(d->rev);
    if (d->wev)
        event_free(d->wev);
    if (d->fd >= 0)
        close(d->fd);
    /* its services are withdrawn by the daemon when its client's connection ends */
    pid_t pids[] = {d->pid, d->zombie};
    for (int i = 0; i < 2; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    free(d->out);
    if (d->sync)
        event_free(d->sync);
    if (d->spawn)
        event_free(d->spawn);
    free(d);
}
