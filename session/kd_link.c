/* rdkdsrv's links: a serial line opened raw (a KGDB target's line, QEMU's -serial pty) or a tcp
 * connection to a gdbstub (QEMU's -gdb tcp::1234). */
#include "kd_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <termios.h>

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

/* ---- A tcp link, dialed on the loop: raw bytes, no session layer (as a Foreign string) ---- */

static void dialed(struct rdt_conn *conn, int rc, const char *why, void *arg)
{
    struct kd_link *l = arg;
    char err[RDT_ERR_MAX];
    l->dialer = NULL;
    l->connecting = false;
    l->conn = conn;
    l->fd = conn ? rdt_conn_fd(conn) : -1;
    int one = 1;
    if (conn) /* gdb's packets are small and wait for their answers */
        setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    snprintf(err, sizeof(err), "%s: %s", l->name, why && *why ? why : strerror(-rc));
    kd_link_opened(l, rc, rc ? err : NULL);
}

static int open_tcp(struct kd_link *l, char *err, size_t errlen)
{
    struct rds_kd *k = l->k;
    struct rdt_tstring ts = l->ts;
    ts.foreign = true; /* the gdbstub's own bytes */
    if (!k->res && rdt_resolver_new_within(&k->res, k->base, KD_CONNECT_MS, err, errlen) != 0)
        return -ENOMEM;
    int rc = rdt_dial_async(&l->dialer, k->base, k->res, &ts, NULL, RDT_ROLE_CLIENT, KD_CONNECT_MS,
                            0, dialed, l, err, errlen);
    l->connecting = rc == 0;
    return rc;
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
    rdt_dialer_free(l->dialer);
    if (l->quiet)
        event_free(l->quiet);
    kd_split_free(&l->split);
    if (l->ser)
        rdt_serial_close(l->ser);
    rdt_conn_free(l->conn);
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
