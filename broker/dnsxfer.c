/* The one update in flight: sent over a non-blocking UDP socket (TCP when a reply is truncated)
 * on the broker's loop, sent again when no answer comes in time. */
#include "dnsupdate_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define IN_MAX (2 + 65535) /* a reply, with its length over TCP */

static void xfer_close(struct rdb_dnsxfer *x)
{
    if (x->ev)
        event_free(x->ev);
    x->ev = NULL;
    if (x->fd >= 0)
        close(x->fd);
    x->fd = -1;
}

void rdb_dnsup_xfer_clear(struct rdb_dnsxfer *x)
{
    xfer_close(x);
    if (x->timer)
        event_free(x->timer);
    x->timer = NULL;
    free(x->wire); /* ldns's LDNS_FREE */
    x->wire = NULL;
    if (x->mac) /* else ldns may not be loaded */
        LDNS(ldns_rdf_deep_free)(x->mac);
    x->mac = NULL;
    free(x->in);
    x->in = NULL;
    x->active = false;
}

static void finish(struct rdb_dnsup *u, int rc, const char *msg)
{
    enum rdb_dns_step step = u->x.step;
    int fam = u->x.fam;
    rdb_dnsup_xfer_clear(&u->x);
    rdb_dnsup_finished(u, step, fam, rc, msg);
}

static void finish_errno(struct rdb_dnsup *u, const char *what, int e)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s %s port %u%s (%s)", what, u->server, u->port,
             u->x.tcp ? " over TCP" : "", strerror(e));
    finish(u, -e, msg);
}

static void on_io(evutil_socket_t fd, short what, void *arg);

static int xfer_arm(struct rdb_dnsxfer *x, void *arg, short what)
{
    if (x->ev)
        event_free(x->ev);
    x->ev = event_new(x->base, x->fd, what | EV_PERSIST, on_io, arg);
    return x->ev && event_add(x->ev, NULL) == 0 ? 0 : -ENOMEM;
}

/* Opens the socket and sends (UDP) or starts connecting (TCP); the timer runs from now. */
static int xfer_connect(struct rdb_dnsup *u)
{
    struct rdb_dnsxfer *x = &u->x;
    int type = (x->tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
    xfer_close(x);
    x->outoff = x->inlen = 0;
    x->fd = socket(u->sa.ss_family, type, 0);
    if (x->fd < 0 ||
        (connect(x->fd, (struct sockaddr *)&u->sa, u->salen) < 0 && errno != EINPROGRESS))
        return -errno;
    if (!x->tcp && send(x->fd, x->wire, x->len, 0) < 0)
        return -errno;
    struct timeval tv = {.tv_sec = x->try_ms / 1000, .tv_usec = (x->try_ms % 1000) * 1000};
    if (xfer_arm(x, u, x->tcp ? EV_WRITE : EV_READ) || event_add(x->timer, &tv))
        return -ENOMEM;
    return 0;
}

static void icmp_note(struct rdb_dnsxfer *x)
{
    if (!x->note[0])
        snprintf(x->note, sizeof(x->note), "; the port was unreachable (%s)",
                 strerror(ECONNREFUSED));
}

static void udp_read(struct rdb_dnsup *u)
{
    struct rdb_dnsxfer *x = &u->x;
    char msg[512];
    int rc = 0;
    for (;;) {
        ssize_t n = recv(x->fd, x->in, IN_MAX, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0 && errno == ECONNREFUSED) { /* one ICMP error (anyone's): the timer goes on */
            icmp_note(x);
            continue;
        }
        if (n < 0)
            return finish_errno(u, "no DNS server answers on", errno);
        enum rdb_dns_reply r = rdb_dnsup_reply(u, x->in, (size_t)n, &rc, msg, sizeof(msg));
        if (r == RDB_DNS_REPLY_DONE)
            return finish(u, rc, msg);
        if (r == RDB_DNS_REPLY_TRUNCATED) {
            x->tcp = true;
            if ((rc = xfer_connect(u)) != 0)
                finish_errno(u, "cannot send the update to the DNS server", -rc);
            return;
        }
    }
}

/* Writes the length-prefixed request once connected. */
static void tcp_write(struct rdb_dnsup *u)
{
    struct rdb_dnsxfer *x = &u->x;
    int e = 0;
    socklen_t elen = sizeof(e);
    if (x->outoff == 0 && (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0 || e))
        return finish_errno(u, "cannot connect to the DNS server", e ? e : errno);
    uint8_t hdr[2] = {(uint8_t)(x->len >> 8), (uint8_t)x->len};
    size_t off = x->outoff;
    struct iovec iov[2] = {{hdr + (off < 2 ? off : 2), off < 2 ? 2 - off : 0},
                           {x->wire + (off > 2 ? off - 2 : 0), x->len - (off > 2 ? off - 2 : 0)}};
    ssize_t n = writev(x->fd, iov, 2);
    if (n < 0 && errno != EAGAIN)
        return finish_errno(u, "cannot send the update to the DNS server", errno);
    x->outoff += n > 0 ? (size_t)n : 0;
    if (x->outoff == x->len + 2 && xfer_arm(x, u, EV_READ))
        finish_errno(u, "cannot wait for the DNS server", ENOMEM);
}

static void tcp_read(struct rdb_dnsup *u)
{
    struct rdb_dnsxfer *x = &u->x;
    ssize_t n = read(x->fd, x->in + x->inlen, IN_MAX - x->inlen);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        return finish_errno(u, "no reply from the DNS server", n ? errno : ECONNRESET);
    x->inlen += (size_t)n;
    size_t need = x->inlen >= 2 ? 2 + ((size_t)x->in[0] << 8 | x->in[1]) : IN_MAX;
    if (x->inlen < need)
        return;
    char msg[512];
    int rc = 0;
    if (rdb_dnsup_reply(u, x->in + 2, need - 2, &rc, msg, sizeof(msg)) == RDB_DNS_REPLY_DONE)
        return finish(u, rc, msg);
    finish_errno(u, "no valid reply from the DNS server", EPROTO);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct rdb_dnsup *u = arg;
    (void)fd;
    if (!u->x.tcp)
        udp_read(u);
    else if (what & EV_WRITE)
        tcp_write(u);
    else
        tcp_read(u);
}

static void on_try_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct rdb_dnsup *u = arg;
    struct rdb_dnsxfer *x = &u->x;
    (void)fd, (void)what;
    struct timeval tv = {.tv_sec = x->try_ms / 1000, .tv_usec = (x->try_ms % 1000) * 1000};
    if (--x->tries > 0) { /* UDP: the same request again, on the same socket */
        int rc = x->tcp ? xfer_connect(u) : 0;
        if (!x->tcp && send(x->fd, x->wire, x->len, 0) < 0 &&
            (errno != ECONNREFUSED || send(x->fd, x->wire, x->len, 0) < 0))
            rc = -errno; /* ECONNREFUSED: an earlier ICMP error, reported now: sent again */
        else if (!x->tcp && event_add(x->timer, &tv))
            rc = -ENOMEM;
        if (rc)
            finish_errno(u, "cannot send the update to the DNS server", -rc);
        return;
    }
    char msg[512];
    if (x->refused[0]) {
        snprintf(msg, sizeof(msg), "%s; the reply is unsigned, and no signed one came within %d s",
                 x->refused, (x->total_ms + 999) / 1000);
        return finish(u, -EACCES, msg);
    }
    snprintf(msg, sizeof(msg),
             "no answer from the DNS server %s port %u%s within %d s (update of %s)%s", u->server,
             u->port, x->tcp ? " over TCP" : "", (x->total_ms + 999) / 1000, u->zone, x->note);
    finish(u, -ETIMEDOUT, msg);
}

int rdb_dnsup_xfer_start(struct rdb_dnsup *u, struct event_base *base, enum rdb_dns_step step,
                         int fam, int try_ms, int tries)
{
    struct rdb_dnsxfer *x = &u->x;
    rdb_dnsup_xfer_clear(x);
    *x = (struct rdb_dnsxfer){.base = base,
                              .step = step,
                              .fam = fam,
                              .fd = -1,
                              .tries = tries,
                              .try_ms = try_ms,
                              .total_ms = try_ms * tries,
                              .active = true};
    x->in = malloc(IN_MAX);
    x->timer = evtimer_new(base, on_try_timeout, u);
    int rc = x->in && x->timer ? rdb_dnsup_request(u, x) : -ENOMEM;
    if (rc == 0)
        rc = xfer_connect(u);
    if (rc)
        rdb_dnsup_xfer_clear(x);
    return rc;
}
