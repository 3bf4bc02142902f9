/* Splicing a connection to a local program's stdin and stdout on the event loop, both ways,
 * with bounded buffers and each direction's end passed on. */
#include "internal.h"

#include <errno.h>
#include <event2/event.h>
#include <linux/sockios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define SPLICE_BUF 65536

struct dir {
    char buf[SPLICE_BUF];
    size_t len, off;
    bool eof; /* the source ended: pass the end on once the buffer is out */
    bool ended;
};

struct rdt_splice {
    struct event_base *base;
    struct rdt_conn *conn;
    int wfd, rfd;
    struct event *conn_ev, *wfd_ev, *rfd_ev;
    struct dir up;   /* conn to wfd */
    struct dir down; /* rfd to conn */
    rdt_splice_cb cb;
    void *arg;
    bool told_gone, done;
    uint64_t sent; /* bytes from rfd that the connection took */
};

static void splice_cb(evutil_socket_t fd, short what, void *arg);

static int fd_read(int fd, struct dir *d)
{
    ssize_t n = read(fd, d->buf, sizeof(d->buf));
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    d->len = (size_t)n;
    d->off = 0;
    d->eof = n == 0;
    return 0;
}

static int fd_write(int fd, struct dir *d)
{
    ssize_t n = write(fd, d->buf + d->off, d->len - d->off);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    d->off += (size_t)n;
    if (d->off == d->len)
        d->len = d->off = 0;
    return 0;
}

static int conn_read(struct rdt_conn *c, struct dir *d)
{
    size_t n = 0;
    int rc = rdt_conn_read(c, d->buf, sizeof(d->buf), &n);
    if (rc == -EAGAIN)
        return 0;
    d->len = n;
    d->off = 0;
    d->eof = rc == 0 && n == 0;
    return rc;
}

static int conn_write(struct rdt_splice *sp, struct dir *d)
{
    size_t n = 0;
    int rc = rdt_conn_write(sp->conn, d->buf + d->off, d->len - d->off, &n);
    if (rc == -EAGAIN)
        return 0;
    sp->sent += n;
    d->off += n;
    if (d->off == d->len)
        d->len = d->off = 0;
    return rc;
}

/* Arms the one event of a descriptor for what it waits on now. */
static void arm(struct rdt_splice *sp, struct event **ev, int fd, short what)
{
    if (*ev)
        event_free(*ev);
    *ev = NULL;
    if (fd < 0 || !what)
        return;
    *ev = event_new(sp->base, fd, what, splice_cb, sp);
    event_add(*ev, NULL);
}

/* Passes on the end of a direction once its buffer is out. */
static void pass_ends(struct rdt_splice *sp)
{
    if (sp->up.eof && !sp->up.len && !sp->up.ended) {
        shutdown(sp->wfd, SHUT_WR); /* a socket's peer sees the end too, not only this fd's */
        close(sp->wfd);             /* the program sees the end of its input */
        sp->wfd = -1;
        sp->up.ended = true;
    }
    if (sp->down.eof && !sp->down.len && !sp->down.ended) {
        rdt_conn_shutdown(sp->conn);
        sp->down.ended = true;
    }
}

static int step(struct rdt_splice *sp, short conn_what, short wfd_what, short rfd_what)
{
    int rc = 0;
    if ((conn_what & EV_READ) && !sp->up.len && !sp->up.eof)
        rc = conn_read(sp->conn, &sp->up);
    if (!rc && (wfd_what & EV_WRITE) && sp->up.len)
        rc = fd_write(sp->wfd, &sp->up);
    if (!rc && (rfd_what & EV_READ) && !sp->down.len && !sp->down.eof)
        rc = fd_read(sp->rfd, &sp->down);
    if (!rc && (conn_what & EV_WRITE) && sp->down.len)
        rc = conn_write(sp, &sp->down);
    pass_ends(sp);
    return rc;
}

static void rearm(struct rdt_splice *sp)
{
    short c = (!sp->up.len && !sp->up.eof ? EV_READ : 0) | (sp->down.len ? EV_WRITE : 0);
    arm(sp, &sp->conn_ev, rdt_conn_fd(sp->conn), c);
    if ((c & EV_READ) && rdt_conn_pending(sp->conn))
        event_active(sp->conn_ev, EV_READ, 0); /* read ahead: the descriptor may stay quiet */
    arm(sp, &sp->wfd_ev, sp->wfd, sp->up.len ? EV_WRITE : 0);
    arm(sp, &sp->rfd_ev, sp->rfd, !sp->down.len && !sp->down.eof ? EV_READ : 0);
}

static void splice_cb(evutil_socket_t fd, short what, void *arg)
{
    struct rdt_splice *sp = arg;
    bool is_conn = fd == rdt_conn_fd(sp->conn);
    int rc = step(sp, is_conn ? what : 0, fd == sp->wfd ? what : 0, fd == sp->rfd ? what : 0);
    /* after progress on one side, the other may proceed without waiting */
    if (!rc)
        rc = step(sp, EV_READ | EV_WRITE, EV_WRITE, EV_READ);
    if (sp->up.eof && !sp->told_gone) {
        sp->told_gone = true;
        sp->cb(sp, RDT_SPLICE_PEER_GONE, sp->arg);
    }
    if (rc || (sp->up.ended && sp->down.ended)) {
        sp->done = true;
        arm(sp, &sp->conn_ev, -1, 0);
        arm(sp, &sp->wfd_ev, -1, 0);
        arm(sp, &sp->rfd_ev, -1, 0);
        sp->cb(sp, RDT_SPLICE_DONE, sp->arg);
        return;
    }
    rearm(sp);
}

int rdt_splice_open(struct rdt_splice **out, struct event_base *base, struct rdt_conn *conn,
                    int wfd, int rfd, rdt_splice_cb cb, void *arg)
{
    *out = NULL;
    struct rdt_splice *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return -ENOMEM;
    *sp = (struct rdt_splice){
        .base = base, .conn = conn, .wfd = wfd, .rfd = rfd, .cb = cb, .arg = arg};
    rearm(sp);
    *out = sp;
    return 0;
}

uint64_t rdt_splice_sent(const struct rdt_splice *sp)
{
    return sp->sent;
}

bool rdt_splice_holding(const struct rdt_splice *sp)
{
    int queued = 0, unread = 0; /* what the socket holds that its peer has not taken yet */
    if (ioctl(rdt_conn_fd(sp->conn), SIOCOUTQ, &queued) < 0)
        queued = 0;
    /* what the program wrote that the splice has not read yet (a program that has ended
     * leaves it in its pipe) */
    if (sp->rfd < 0 || sp->down.eof || ioctl(sp->rfd, FIONREAD, &unread) < 0)
        unread = 0;
    return sp->down.len > 0 || queued > 0 || unread > 0;
}

void rdt_splice_free(struct rdt_splice *sp)
{
    if (!sp)
        return;
    arm(sp, &sp->conn_ev, -1, 0);
    arm(sp, &sp->wfd_ev, -1, 0);
    arm(sp, &sp->rfd_ev, -1, 0);
    rdt_conn_free(sp->conn);
    if (sp->wfd >= 0)
        close(sp->wfd);
    if (sp->rfd >= 0)
        close(sp->rfd);
    free(sp);
}
