/* rdkdsrv's links: a serial line opened raw (a KGDB target's line, QEMU's -serial pty) or a tcp
 * connection to a gdbstub (QEMU's -gdb tcp::1234). */
#include "kd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#define LINK_FORMS                                                                                 \
    "com:port=DEV,baud=N (a serial line) or tcp:server=HOST,port=N (a gdbstub such as QEMU's "     \
    "-gdb tcp::1234)"

/* Whether a com string names a channel (which a raw line has not). */
static bool has_channel(const char *s)
{
    for (const char *p = strchr(s, ':'); p && *p; p = strchr(p + 1, ',')) {
        const char *k = p + 1;
        while (*k == ' ')
            k++;
        if (strncasecmp(k, "channel", 7) == 0)
            return true;
    }
    return false;
}

static bool tcp_link(const struct rdt_tstring *ts)
{
    return ts->proto == RDT_TCP && ts->server[0] && !ts->clicon[0] && ts->port_lo == ts->port_hi &&
           !ts->password[0] && !ts->password_ask;
}

int kd_link_parse(const char *s, struct rdt_tstring *ts, char *canon, size_t len, char *err,
                  size_t errlen)
{
    char buf[RDT_STRING_MAX + 16], why[RDT_ERR_MAX], shown[RDT_ECHO_LEN];
    bool com = strncasecmp(s, "com:", 4) == 0;
    rdt_echo(s, shown);
    if (com && has_channel(s)) {
        snprintf(err, errlen,
                 "link %s: a kernel debugging link is the raw line: leave out "
                 "channel=",
                 shown);
        return -EINVAL;
    }
    snprintf(buf, sizeof(buf), com ? "%s,channel=0" : "%s", s);
    if (strlen(s) > RDT_STRING_MAX || rdt_parse(buf, RDT_CLIENT, ts, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "link %s: %s", shown, strlen(s) > RDT_STRING_MAX ? "too long" : why);
        return -EINVAL;
    }
    ts->foreign = false; /* a link is raw bytes whether or not its listing says Foreign */
    if (ts->proto == RDT_COM) {
        snprintf(canon, len, "com:Port=%s,Baud=%u", ts->com_port, (unsigned)ts->baud);
        return 0;
    }
    if (tcp_link(ts) && rdt_format(ts, RDT_FORM_CANON, NULL, 0, canon, len) > 0)
        return 0;
    snprintf(err, errlen, "link %s: a kernel debugging link is %s", shown, LINK_FORMS);
    return -EINVAL;
}

/* ---- A tcp link, connected on the loop ---- */

static void tcp_done(struct kd_link *l, int rc, const char *why)
{
    char err[RDT_ERR_MAX];
    l->connecting = false;
    rdt_lookup_cancel(l->lookup);
    l->lookup = NULL;
    evtimer_del(l->deadline);
    if (l->cev)
        event_free(l->cev);
    l->cev = NULL;
    if (rc && l->fd >= 0) {
        close(l->fd);
        l->fd = -1;
    }
    snprintf(err, sizeof(err), "%s: %s", l->name, why ? why : strerror(-rc));
    kd_link_opened(l, rc, rc ? err : NULL);
}

static void try_next(struct kd_link *l);

static void connected_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kd_link *l = arg;
    int e = 0, one = 1;
    socklen_t el = sizeof(e);
    if (what & EV_TIMEOUT)
        e = ETIMEDOUT; /* this address's share of the time: the next one's turn */
    else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
        e = errno;
    event_free(l->cev);
    l->cev = NULL;
    if (e) {
        close(l->fd);
        l->fd = -1;
        l->rc = -e;
        try_next(l);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    tcp_done(l, 0, NULL);
}

/* Connects to the next address, or says that none answered. */
static void try_next(struct kd_link *l)
{
    while (l->next_addr < l->addrs.n) {
        struct sockaddr_storage sa;
        socklen_t salen;
        if (rdt_sockaddr_of(l->addrs.addr[l->next_addr++], l->ts.port_lo, &sa, &salen) != 0)
            continue;
        int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            l->rc = -errno;
            continue;
        }
        if (connect(fd, (struct sockaddr *)&sa, salen) != 0 && errno != EINPROGRESS) {
            l->rc = -errno;
            close(fd);
            continue;
        }
        /* each address but the last gets its share of the time left: one that drops the
         * connection silently does not use up the others' */
        int left = l->addrs.n - l->next_addr;
        int64_t share = (l->until - rdt_now_ms()) / (left + 1);
        struct timeval tv = {.tv_sec = (time_t)(share / 1000),
                             .tv_usec = (suseconds_t)(share % 1000 * 1000)};
        l->fd = fd;
        l->cev = event_new(l->k->base, fd, EV_WRITE, connected_cb, l);
        if (l->cev && event_add(l->cev, left && share > 0 ? &tv : NULL) == 0)
            return;
        tcp_done(l, -ENOMEM, NULL);
        return;
    }
    tcp_done(l, l->rc ? l->rc : -EHOSTUNREACH, NULL);
}

static void resolved_cb(int rc, const struct rdt_addrs *a, const char *err, void *arg)
{
    struct kd_link *l = arg;
    l->lookup = NULL;
    if (rc < 0 || !a || a->n == 0) {
        tcp_done(l, rc < 0 ? rc : -ENOENT, rc < 0 && err && *err ? err : NULL);
        return;
    }
    l->addrs = *a;
    try_next(l);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    char why[64];
    snprintf(why, sizeof(why), "no answer in %d ms", KD_CONNECT_MS);
    tcp_done(arg, -ETIMEDOUT, why);
}

static int open_tcp(struct kd_link *l, char *err, size_t errlen)
{
    struct rds_kd *k = l->k;
    struct timeval tv = {.tv_sec = KD_CONNECT_MS / 1000, .tv_usec = KD_CONNECT_MS % 1000 * 1000};
    if (!k->res && rdt_resolver_new_within(&k->res, k->base, KD_CONNECT_MS, err, errlen) != 0)
        return -ENOMEM;
    l->connecting = true;
    l->until = rdt_now_ms() + KD_CONNECT_MS;
    l->deadline = evtimer_new(k->base, deadline_cb, l);
    l->lookup =
        l->deadline ? rdt_lookup_addrs(k->res, l->ts.server, l->ts.ipv6, resolved_cb, l) : NULL;
    if (!l->lookup || evtimer_add(l->deadline, &tv) != 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

int kd_link_open(struct kd_link **out, struct rds_kd *k, const struct rdt_tstring *ts,
                 const char *canon, char *err, size_t errlen)
{
    *out = NULL;
    struct kd_link *l = calloc(1, sizeof(*l));
    if (!l || !(l->out = evbuffer_new())) {
        free(l);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->k = k;
    l->ts = *ts;
    l->fd = -1;
    snprintf(l->name, sizeof(l->name), "%s", canon);
    int rc = 0;
    if (ts->proto == RDT_COM) {
        rc = rdt_serial_open(&l->ser, ts->com_device, ts->baud, err, errlen);
        l->fd = rc ? -1 : rdt_serial_fd(l->ser);
    } else {
        rc = open_tcp(l, err, errlen);
    }
    if (rc) {
        kd_link_close(l);
        return rc;
    }
    *out = l;
    return 0;
}

void kd_link_close(struct kd_link *l)
{
    if (!l)
        return;
    if (l->rev)
        event_free(l->rev);
    if (l->wev)
        event_free(l->wev);
    rdt_lookup_cancel(l->lookup);
    if (l->cev)
        event_free(l->cev);
    if (l->deadline)
        event_free(l->deadline);
    if (l->quiet)
        event_free(l->quiet);
    kd_split_free(&l->split);
    if (l->ser)
        rdt_serial_close(l->ser);
    else if (l->fd >= 0)
        close(l->fd);
    evbuffer_free(l->out);
    free(l);
}

void kd_link_break(struct kd_link *l, const struct rds_kd_opts *o)
{
    if (!l->ser)
        return; /* a gdbstub takes gdb's own interrupt */
    if (o->serial_break)
        tcsendbreak(l->fd, 0);
    evbuffer_add(l->out, o->break_in, o->break_len);
}
