/* The socket layers (tcp, unix): the bottom of every stack. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sock {
    bool connecting;
    bool have_cred; /* unix: the peer's credentials, once read */
    struct ucred cred;
    char what[RDT_HOST_MAX + 16]; /* the peer, for messages */
    char err[RDT_ERR_MAX];
};

static int sock_fail(struct rdt_conn *c, int rc, const char *op)
{
    struct sock *s = c->ctx;
    snprintf(s->err, sizeof(s->err), "%s: %s %s: %s", c->ops->name, op, s->what, strerror(-rc));
    return rc;
}

static int sock_open(struct rdt_conn *c)
{
    struct sock *s = c->ctx;
    if (!s->connecting)
        return 0;
    /* connected once it has a peer (one system call in the usual case); else the connect
     * failed (SO_ERROR says why) or is still going on */
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    if (getpeername(c->fd, (struct sockaddr *)&peer, &plen) == 0) {
        s->connecting = false;
        return 0;
    }
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    return soerr ? sock_fail(c, -soerr, "cannot connect to") : -EAGAIN;
}

static void sock_close(struct rdt_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->ctx);
}

static int sock_read(struct rdt_conn *c, void *buf, size_t len, size_t *nread)
{
    *nread = 0;
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n >= 0) {
            *nread = (size_t)n;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -EAGAIN;
        return sock_fail(c, -errno, "reading from");
    }
}

static int sock_write(struct rdt_conn *c, const void *buf, size_t len, size_t *nwritten)
{
    *nwritten = 0;
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            *nwritten = (size_t)n;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -EAGAIN;
        return sock_fail(c, -errno, "writing to");
    }
}

static short sock_events(struct rdt_conn *c)
{
    struct sock *s = c->ctx;
    return s->connecting ? POLLOUT : POLLIN;
}

static const char *sock_last_error(struct rdt_conn *c)
{
    struct sock *s = c->ctx;
    return s->err;
}

const struct rdt_ops rdt_tcp_ops = {
    .name = "tcp",
    .open = sock_open,
    .close = sock_close,
    .read = sock_read,
    .write = sock_write,
    .events = sock_events,
    .last_error = sock_last_error,
};

const struct rdt_ops rdt_unix_ops = {
    .name = "npipe",
    .open = sock_open,
    .close = sock_close,
    .read = sock_read,
    .write = sock_write,
    .events = sock_events,
    .last_error = sock_last_error,
};

static struct rdt_conn *sock_new(const struct rdt_ops *ops, int fd, bool connecting,
                                 const char *what)
{
    struct sock *s = calloc(1, sizeof(*s));
    struct rdt_conn *c = s ? rdt_conn_push(ops, s, NULL) : NULL;
    if (!c) {
        free(s);
        close(fd);
        return NULL;
    }
    c->fd = fd;
    s->connecting = connecting;
    snprintf(s->what, sizeof(s->what), "%s", what);
    return c;
}

struct rdt_conn *rdt_sock_connecting(const struct rdt_ops *ops, int fd, const char *what)
{
    return sock_new(ops, fd, true, what);
}

struct rdt_conn *rdt_sock_conn(const struct rdt_ops *ops, int fd)
{
    return sock_new(ops, fd, false, "peer");
}

int rdt_sock_connect_start(const struct sockaddr *sa, socklen_t salen, int *fd_out)
{
    *fd_out = -1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    *fd_out = fd;
    if (connect(fd, sa, salen) == 0)
        return 0;
    return errno == EINPROGRESS ? -EINPROGRESS : -errno;
}

int rdt_conn_peer_cred(struct rdt_conn *c, struct ucred *out)
{
    /* written on every path, and never as root's: nobody is taken for root after a failure */
    *out = (struct ucred){.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    while (c->next)
        c = c->next;
    if (c->ops != &rdt_unix_ops)
        return -ENOTSOCK;
    struct sock *s = c->ctx;
    socklen_t len = sizeof(s->cred);
    if (!s->have_cred && getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &s->cred, &len) < 0)
        return -errno;
    s->have_cred = true;
    *out = s->cred;
    return 0;
}

void rdt_conn_peer_name(struct rdt_conn *c, char *buf, size_t len)
{
    struct ucred cred;
    if (rdt_conn_peer_cred(c, &cred) == 0)
        snprintf(buf, len, "uid %u", (unsigned)cred.uid);
    else if (c->ops == &rdt_unix_ops)
        snprintf(buf, len, "unknown");
    else
        rdt_peer_addr(c->fd, buf, len);
}
