/* What every interactive client shares: the password prompt, the dial (a remote host's pipe
 * through its broker), and the byte pump of rdq -premote. */
#include "session.h"

#include "discover.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

int rds_ask_secret(const char *prompt, char *buf, size_t len)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct termios old, quiet;
    bool tty = tcgetattr(fd, &old) == 0;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    if (tty)
        tcsetattr(fd, TCSAFLUSH, &quiet);
    dprintf(fd, "%s: ", prompt);
    ssize_t n = read(fd, buf, len - 1);
    dprintf(fd, "\n");
    if (tty)
        tcsetattr(fd, TCSAFLUSH, &old);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

int rds_dial(struct rdt_conn **out, const char *t, const char *no_foreign, int timeout_ms,
             char *err, size_t errlen)
{
    struct rdt_tstring ts;
    char pw[64] = "";
    *out = NULL;
    if (rdt_parse(t, RDT_CLIENT, &ts, err, errlen) != 0)
        return -EINVAL;
    if (ts.foreign && no_foreign) {
        char shown[RDT_ECHO_LEN];
        snprintf(err, errlen, "%s: Foreign: %s", rdt_echo(t, shown), no_foreign);
        return -EINVAL;
    }
    if (ts.password_ask && rds_ask_secret("Password", pw, sizeof(pw)) != 0) {
        snprintf(err, errlen,
                 "Password=*: no terminal to ask the password on; give "
                 "password=... in the string");
        return -EINVAL;
    }
    bool relay = (ts.proto == RDT_NPIPE || ts.proto == RDT_SPIPE) && !rdt_host_is_local(ts.server);
    int rc = relay ? rdd_relay_dial(out, &ts, pw[0] ? pw : NULL, 0, timeout_ms, err, errlen)
                   : rdt_dial(out, &ts, pw[0] ? pw : NULL, timeout_ms, err, errlen);
    explicit_bzero(pw, sizeof(pw));
    explicit_bzero(ts.password, sizeof(ts.password));
    return rc;
}

static int pump_fail(struct rdt_conn *c, int rc)
{
    const char *e = rdt_conn_error(c);
    fprintf(stderr, "rdq: %s\n", e && *e ? e : strerror(-rc));
    return 1;
}

/* Copies stdin to the connection and the connection to stdout until the server ends. What the
 * connection does not take at once waits in `pend` while the connection is still read, so that
 * neither end waits on the other with full buffers both ways. */
int rds_pump(struct rdt_conn *c)
{
    static char buf[65536], pend[65536];
    size_t pend_off = 0, pend_len = 0;
    bool in_done = false;
    for (;;) {
        short want = (short)(rdt_conn_events(c) | (pend_len ? POLLOUT : 0));
        struct pollfd p[2] = {{.fd = in_done || pend_len ? -1 : 0, .events = POLLIN},
                              {.fd = rdt_conn_fd(c), .events = want}};
        bool held = rdt_conn_pending(c); /* read ahead: the descriptor may stay quiet */
        if (poll(p, 2, held ? 0 : -1) < 0 && errno != EINTR)
            return pump_fail(c, -errno);
        size_t n = 0;
        if (held || (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            int rc = rdt_conn_read(c, buf, sizeof(buf), &n);
            if (rc == 0 && n == 0)
                return 0; /* the stub ended */
            if (rc && rc != -EAGAIN)
                return pump_fail(c, rc);
            if (n && write(1, buf, n) != (ssize_t)n)
                return 1; /* the debugger is gone */
        }
        if (pend_len) {
            int rc = rdt_conn_write(c, pend + pend_off, pend_len, &n);
            if (rc && rc != -EAGAIN)
                return pump_fail(c, rc);
            pend_off += n;
            pend_len -= n;
        }
        if (p[0].revents) {
            ssize_t r = read(0, pend, sizeof(pend));
            if (r <= 0) {
                rdt_conn_shutdown(c); /* let the stub see the end, then drain */
                in_done = true;
            } else {
                pend_off = 0;
                pend_len = (size_t)r;
            }
        }
    }
}
