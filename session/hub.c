/* rddbg's hub: one debugger session shared by the local console and every client, the lines of
 * all run in the order received, the output and rddbg's notices fanned out to all. */
#include "hub_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOTICE_MAX 2048
#define KILL_GRACE_MS 2000 /* after SIGTERM, before SIGKILL */

unsigned hub_joined(const struct rds_hub *h)
{
    unsigned n = 0;
    const struct hub_client *c;
    TAILQ_FOREACH(c, &h->clients, link)
    {
        if (c->state == HUB_JOINED && !c->dead)
            n++;
    }
    return n;
}

void hub_fanout(struct rds_hub *h, enum rds_type type, const void *body, size_t len)
{
    struct hub_client *c;
    TAILQ_FOREACH(c, &h->clients, link)
    {
        if (c->state == HUB_JOINED && !c->dead)
            hub_client_send(c, type, body, len);
    }
}

/* ---- The local console ---- */

static void on_console_out(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct rds_hub *h = arg;
    int rc = evbuffer_write(h->cout, fd);
    if ((rc < 0 && errno != EAGAIN && errno != EINTR) || evbuffer_get_length(h->cout) == 0)
        event_del(h->out_ev);
    if (rc < 0 && errno != EAGAIN && errno != EINTR)
        evbuffer_drain(h->cout, evbuffer_get_length(h->cout)); /* stdout is gone */
}

/* A file takes what is written at once; a terminal, a pipe or a socket may not. */
static void write_direct(const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(1, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

void hub_console_write(struct rds_hub *h, const void *buf, size_t len)
{
    if (!h->console)
        return;
    if (!h->out_ev) {
        write_direct(buf, len);
        return;
    }
    if (evbuffer_get_length(h->cout) > HUB_QUEUE_MAX)
        return; /* a console that does not keep up loses output, never stops the session */
    evbuffer_add(h->cout, buf, len);
    event_add(h->out_ev, NULL);
}

static void vnotice(struct rds_hub *h, struct hub_client *to, bool all, const char *fmt, va_list ap)
{
    char msg[NOTICE_MAX];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    if (all || !to) {
        hub_console_write(h, msg, len);
        hub_console_write(h, "\n", 1);
    }
    if (all)
        hub_fanout(h, RDS_NOTICE, msg, len);
    else if (to)
        hub_client_send(to, RDS_NOTICE, msg, len);
}

void hub_notice_all(struct rds_hub *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnotice(h, NULL, true, fmt, ap);
    va_end(ap);
}

void hub_notice(struct rds_hub *h, struct hub_client *to, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnotice(h, to, false, fmt, ap);
    va_end(ap);
}

/* ---- Lines and interrupts from any participant ---- */

static const char *who_user(const struct rds_hub *h, const struct hub_client *c)
{
    return c ? c->user : h->user;
}

static const char *who_host(const struct rds_hub *h, const struct hub_client *c)
{
    return c ? c->host : h->host;
}

void hub_line(struct rds_hub *h, struct hub_client *from, const char *line)
{
    if (h->ending)
        return;
    if (hub_is_command(line)) {
        hub_command(h, from, line);
        return;
    }
    if (from && from->observe) {
        hub_notice(h, from, "you joined as an observer: input is refused");
        return;
    }
    if (from) {
        hub_notice_all(h, "%s@%s: %s", from->user, from->host, line);
    } else {
        char msg[NOTICE_MAX];
        int n = snprintf(msg, sizeof(msg), "%s@%s: %s", h->user, h->host, line);
        hub_fanout(h, RDS_NOTICE, msg, n < 0 ? 0 : strnlen(msg, sizeof(msg)));
    }
    if (hub_pty_send(h, line) < 0)
        hub_notice(h, from, "the debugger is not reading its input: the line was not sent");
}

void hub_interrupt_from(struct rds_hub *h, struct hub_client *from)
{
    if (h->ending)
        return;
    if (from && from->observe) {
        hub_notice(h, from, "you joined as an observer: input is refused");
        return;
    }
    hub_notice_all(h, "%s@%s interrupts the debugger", who_user(h, from), who_host(h, from));
    hub_pty_interrupt(h);
}

/* Reads the console's lines; its end leaves the session to the clients (as -noio). */
static void on_console_in(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct rds_hub *h = arg;
    char buf[4096];
    ssize_t n = read(h->in_polled ? fd : 0, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0)
        evbuffer_add(h->in_buf, buf, (size_t)n);
    char *line;
    size_t len;
    while ((line = evbuffer_readln(h->in_buf, &len, EVBUFFER_EOL_LF))) {
        hub_line(h, NULL, line);
        free(line);
    }
    if (evbuffer_get_length(h->in_buf) > RDS_LINE_MAX) {
        hub_notice(h, NULL, "a line longer than %d bytes was dropped", RDS_LINE_MAX);
        evbuffer_drain(h->in_buf, evbuffer_get_length(h->in_buf));
    }
    if (n <= 0)
        event_del(h->in_ev);
    else if (!h->in_polled)
        event_active(h->in_ev, EV_READ, 0);
}

/* The local terminal gives whole lines, echoes them, and turns Ctrl-C into SIGINT. */
static void console_tty(struct rds_hub *h)
{
    if (!isatty(0) || tcgetattr(0, &h->saved) < 0)
        return;
    h->tty = h->tty_saved = true;
    struct termios t = h->saved;
    t.c_lflag |= ICANON | ECHO | ISIG;
    t.c_iflag |= ICRNL;
    tcsetattr(0, TCSANOW, &t);
}

/* Whether `fd` is a pipe or a socket: what the loop can poll, unlike a file. */
static bool is_pipe(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

/* The console: this process's terminal, or its standard input and output. 0, or -ENOMEM. */
static int console_open(struct rds_hub *h)
{
    h->tty_out = -1;
    h->console = !h->o.noio;
    if (!h->console)
        return 0;
    console_tty(h);
    h->cout = evbuffer_new();
    h->in_buf = evbuffer_new();
    const char *tty = isatty(1) ? ttyname(1) : NULL;
    h->tty_out = tty ? open(tty, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC) : -1;
    bool out_pipe = h->tty_out < 0 && is_pipe(1);
    if (h->tty_out >= 0) { /* Ctrl-S on it holds its output, never the session */
        h->out_ev = event_new(h->base, h->tty_out, EV_WRITE | EV_PERSIST, on_console_out, h);
    } else if (out_pipe) {
        fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
        h->out_ev = event_new(h->base, 1, EV_WRITE | EV_PERSIST, on_console_out, h);
    }
    /* a file (or /dev/null) cannot be polled: it is read a chunk per turn of the loop */
    h->in_polled = isatty(0) || is_pipe(0);
    h->in_ev = h->in_polled ? event_new(h->base, 0, EV_READ | EV_PERSIST, on_console_in, h)
                            : event_new(h->base, -1, 0, on_console_in, h);
    bool out_ok = h->out_ev || (h->tty_out < 0 && !out_pipe);
    return h->cout && h->in_buf && h->in_ev && out_ok ? 0 : -ENOMEM;
}

static void console_close(struct rds_hub *h)
{
    if (h->tty_out >= 0) { /* what is left, for as long as the terminal takes it (2 s at most) */
        int64_t end = rdt_now_ms() + 2000;
        while (evbuffer_get_length(h->cout) && rdt_now_ms() < end) {
            struct pollfd p = {.fd = h->tty_out, .events = POLLOUT};
            if (poll(&p, 1, (int)(end - rdt_now_ms())) != 1 ||
                (evbuffer_write(h->cout, h->tty_out) < 0 && errno != EAGAIN && errno != EINTR))
                break;
        }
        close(h->tty_out);
        h->tty_out = -1;
    } else if (h->cout) { /* stdout is shared with the shell: blocking again, what is left */
        fcntl(1, F_SETFL, fcntl(1, F_GETFL) & ~O_NONBLOCK);
        if (evbuffer_get_length(h->cout))
            evbuffer_write(h->cout, 1);
    }
    if (h->tty_saved)
        tcsetattr(0, TCSANOW, &h->saved);
    h->tty_saved = false;
    if (h->in_ev)
        event_free(h->in_ev);
    if (h->out_ev)
        event_free(h->out_ev);
    if (h->cout)
        evbuffer_free(h->cout);
    if (h->in_buf)
        evbuffer_free(h->in_buf);
    h->in_ev = h->out_ev = NULL;
    h->cout = h->in_buf = NULL;
    h->console = false;
}

/* ---- The end ---- */

static void why_ended(int st, char *buf, size_t len, int *status)
{
    if (WIFSIGNALED(st)) {
        snprintf(buf, len, "the debugger ended (killed by signal %d)", WTERMSIG(st));
        *status = 128 + WTERMSIG(st);
    } else {
        snprintf(buf, len, "the debugger ended (exit status %d)", WEXITSTATUS(st));
        *status = WEXITSTATUS(st);
    }
}

static bool all_gone(const struct rds_hub *h)
{
    return TAILQ_EMPTY(&h->clients);
}

/* The debugger ended: its last output to all, then each client its E, the servers withdrawn. */
static void end_session(struct rds_hub *h, int st)
{
    char why[128];
    hub_pty_drain(h);
    why_ended(st, why, sizeof(why), &h->status);
    h->ending = true;
    hub_servers_close(h);
    struct hub_client *c;
    TAILQ_FOREACH(c, &h->clients, link)
    {
        hub_client_end(c, why);
    }
    fprintf(stderr, "rddbg: %s\n", why);
    if (all_gone(h)) {
        event_base_loopexit(h->base, NULL);
        return;
    }
    struct timeval tv = {.tv_sec = HUB_FLUSH_MS / 1000, .tv_usec = HUB_FLUSH_MS % 1000 * 1000};
    event_add(h->end_ev, &tv);
}

static void on_end_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rds_hub *h = arg;
    event_base_loopexit(h->base, NULL);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rds_hub *h = arg;
    hub_reap(h);
    if (h->ending && all_gone(h))
        event_base_loopexit(h->base, NULL);
}

static void on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rds_hub *h = arg;
    if (h->pid > 0)
        kill(h->pid, SIGKILL);
}

/* Told to end: the debugger is ended, and its end ends the session. */
static void stop_debugger(struct rds_hub *h)
{
    if (h->pid <= 0 || evtimer_pending(h->kill_ev, NULL))
        return;
    kill(h->pid, SIGTERM);
    kill(-h->pid, SIGHUP); /* its session: what it started */
    struct timeval tv = {.tv_sec = KILL_GRACE_MS / 1000, .tv_usec = 0};
    evtimer_add(h->kill_ev, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct rds_hub *h = arg;
    if (sig == SIGCHLD) {
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
            if (pid == h->pid && !h->ending) {
                h->pid = 0;
                end_session(h, st);
            }
    } else if (sig == SIGINT && h->tty && h->console) {
        hub_interrupt_from(h, NULL);
    } else if (sig == SIGWINCH) {
        hub_pty_resize(h);
    } else {
        stop_debugger(h);
    }
}

/* ---- Life ---- */

static void who_am_i(struct rds_hub *h)
{
    struct passwd *pw = getpwuid(getuid());
    const char *u = pw ? pw->pw_name : getenv("USER");
    snprintf(h->user, sizeof(h->user), "%s", u ? u : "unknown");
    if (gethostname(h->host, sizeof(h->host)) < 0 || !h->host[0])
        snprintf(h->host, sizeof(h->host), "localhost");
    h->host[sizeof(h->host) - 1] = '\0';
}

static int check_password(const char *pw, char *err, size_t errlen)
{
    size_t n = strlen(pw);
    bool ok = n > 0 && n <= RDT_PASSWORD_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (pw[i] >= 'a' && pw[i] <= 'z') || (pw[i] >= 'A' && pw[i] <= 'Z') ||
             (pw[i] >= '0' && pw[i] <= '9');
    if (ok)
        return 0;
    snprintf(err, errlen, "a control password is 1 to %d letters and digits", RDT_PASSWORD_MAX);
    return -EINVAL;
}

int rds_hub_new(struct rds_hub **out, struct event_base *base, const struct rds_hub_opts *o,
                char *err, size_t errlen)
{
    *out = NULL;
    if (o->control_password && check_password(o->control_password, err, errlen))
        return -EINVAL;
    struct rds_hub *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->base = base;
    h->o = *o;
    h->master = h->tty_out = -1;
    snprintf(h->control_pw, sizeof(h->control_pw), "%s",
             o->control_password ? o->control_password : "");
    snprintf(h->broker, sizeof(h->broker), "%s", o->broker ? o->broker : "");
    snprintf(h->desc, sizeof(h->desc), "%s", o->desc ? o->desc : "rddbg");
    h->o.control_password = h->control_pw[0] ? h->control_pw : NULL;
    h->o.broker = h->broker[0] ? h->broker : NULL;
    h->o.desc = h->desc;
    TAILQ_INIT(&h->clients);
    rdt_peers_init(&h->peers, HUB_CLIENTS_MAX, HUB_PEER_CLIENTS_MAX);
    who_am_i(h);
    h->reap_ev = event_new(base, -1, 0, on_reap, h);
    h->kill_ev = evtimer_new(base, on_kill_timer, h);
    h->end_ev = evtimer_new(base, on_end_timer, h);
    *out = h;
    return 0;
}

int rds_hub_listen(struct rds_hub *h, const char *tstring, char *err, size_t errlen)
{
    return hub_server_open(h, tstring, err, errlen);
}

int rds_hub_start(struct rds_hub *h, char *const argv[], char *err, size_t errlen)
{
    int rc = console_open(h);
    if (rc) {
        console_close(h);
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    rc = hub_pty_start(h, argv, err, errlen);
    if (rc)
        console_close(h);
    return rc;
}

int rds_hub_run(struct rds_hub *h)
{
    static const int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGWINCH};
    for (int i = 0; i < 5; i++) {
        h->sigs[i] = evsignal_new(h->base, sigs[i], on_signal, h);
        event_add(h->sigs[i], NULL);
    }
    /* a debugger that ended before its SIGCHLD had a handler is a zombie now: reap it; and a
     * window changed before SIGWINCH had one is taken now */
    on_signal(SIGCHLD, 0, h);
    hub_pty_resize(h);
    if (h->in_ev && h->in_polled)
        event_add(h->in_ev, NULL);
    else if (h->in_ev)
        event_active(h->in_ev, EV_READ, 0);
    event_base_dispatch(h->base);
    return h->status;
}

void rds_hub_free(struct rds_hub *h)
{
    if (!h)
        return;
    while (!TAILQ_EMPTY(&h->clients))
        hub_client_free(TAILQ_FIRST(&h->clients));
    hub_servers_close(h);
    for (int i = 0; i < h->nservers; i++)
        free(h->servers[i]);
    if (h->pid > 0) {
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
    }
    hub_pty_close(h);
    console_close(h);
    for (int i = 0; i < 5; i++)
        if (h->sigs[i])
            event_free(h->sigs[i]);
    event_free(h->reap_ev);
    event_free(h->kill_ev);
    event_free(h->end_ev);
    explicit_bzero(h->control_pw, sizeof(h->control_pw));
    rdt_peers_free(&h->peers);
    free(h);
}
