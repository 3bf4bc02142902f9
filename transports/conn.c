/* The connection stack: allocation, teardown and blocking helpers over non-blocking ops. */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

int rdt_errf(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int64_t rdt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct rdt_conn *rdt_conn_push(const struct rdt_ops *ops, void *ctx, struct rdt_conn *next)
{
    struct rdt_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ops = ops;
    c->ctx = ctx;
    c->next = next;
    c->fd = next ? next->fd : -1;
    return c;
}

void rdt_conn_free(struct rdt_conn *c)
{
    while (c) {
        struct rdt_conn *next = c->next;
        c->ops->close(c);
        free(c);
        c = next;
    }
}

void rdt_conn_discard(struct rdt_conn *c)
{
    struct linger now = {.l_onoff = 1, .l_linger = 0};
    if (c && c->fd >= 0)
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now)); /* unix sockets ignore it */
    rdt_conn_free(c);
}

void rdt_conn_shutdown(struct rdt_conn *c)
{
    int fd = c ? c->fd : -1;
    for (; c; c = c->next)
        if (c->ops->shutdown)
            c->ops->shutdown(c);
    if (fd >= 0)
        shutdown(fd, SHUT_WR);
}

void rdt_conn_close_with(struct rdt_conn *c, const void *last, size_t len)
{
    if (!c)
        return;
    size_t n = 0;
    if (len)
        rdt_conn_write(c, last, len, &n); /* a fresh connection's buffer takes it whole */
    /* what the peer sent is read first: closing on unread bytes would reset the connection,
     * and a reset may discard the message before the peer reads it */
    uint8_t sink[4096];
    for (int i = 0; i < 16 && c->fd >= 0 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    rdt_conn_free(c);
}

/* Waits for the events the stack asks for; -ETIMEDOUT once `deadline` (ms, -1: none) passed. */
static int wait_events(struct rdt_conn *c, short events, int64_t deadline)
{
    struct pollfd p = {.fd = c->fd, .events = events ? events : POLLIN};
    int left = -1;
    if (deadline >= 0) {
        int64_t d = deadline - rdt_now_ms();
        if (d <= 0)
            return -ETIMEDOUT;
        left = (int)d;
    }
    int n = poll(&p, 1, left);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    return n == 0 ? -ETIMEDOUT : 0;
}

static int64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : rdt_now_ms() + timeout_ms;
}

int rdt_conn_open_wait(struct rdt_conn *c, int timeout_ms)
{
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        int rc = rdt_conn_open_step(c);
        if (rc != -EAGAIN)
            return rc;
        rc = wait_events(c, rdt_conn_events(c), deadline);
        if (rc)
            return rc;
    }
}

int rdt_conn_write_all(struct rdt_conn *c, const void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = deadline_of(timeout_ms);
    const char *p = buf;
    while (len > 0) {
        size_t n = 0;
        int rc = rdt_conn_write(c, p, len, &n);
        if (rc == -EAGAIN)
            rc = wait_events(c, POLLOUT, deadline);
        if (rc)
            return rc;
        p += n;
        len -= n;
    }
    return 0;
}

int rdt_conn_read_wait(struct rdt_conn *c, void *buf, size_t len, size_t *nread, int timeout_ms)
{
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        int rc = rdt_conn_read(c, buf, len, nread);
        if (rc != -EAGAIN)
            return rc;
        rc = wait_events(c, POLLIN, deadline);
        if (rc)
            return rc;
    }
}
