/* rdq -remote: a client of a shared debugging session. What the debugger prints (and rddbg's
 * notices) goes to stdout; lines of stdin go to the debugger, a terminal editing them; Ctrl-C
 * is sent as an interrupt; .detach or the end of input leaves. */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RDQ_STR_(x) #x
#define RDQ_STR(x) RDQ_STR_(x)
#define OUT_MAX (RDS_HDR_LEN + RDS_LINE_MAX + 64) * 8 /* frames waiting for the connection */

struct remote {
    struct rdt_conn *c;
    const struct rds_remote_opts *o;
    struct rds_reader rd;
    uint8_t out[OUT_MAX];
    size_t out_len;
    char line[RDS_LINE_MAX + 1]; /* stdin, up to its next newline */
    size_t line_len;
    bool in_done, observer, welcomed, leaving;
    bool too_long;       /* the line being read is past RDS_LINE_MAX: dropped whole */
    int64_t deadline;    /* for the welcome */
    int64_t quiet_since; /* after the input ended: the last time the session said anything */
    int status;          /* -1 while the session goes on */
};

static int sig_pipe[2] = {-1, -1};

static void on_sigint(int sig)
{
    (void)sig;
    int saved = errno;
    if (write(sig_pipe[1], "i", 1) < 0) {
        /* a full pipe holds interrupts enough */
    }
    errno = saved;
}

static int send_frame(struct remote *r, enum rds_type type, const void *body, size_t len)
{
    if (r->out_len + RDS_HDR_LEN + len > sizeof(r->out))
        return -ENOBUFS;
    r->out_len += rds_frame(r->out + r->out_len, type, body, len);
    return 0;
}

static void say(const char *fmt, const char *arg)
{
    fflush(stdout);
    fprintf(stderr, fmt, arg);
}

static void join(struct remote *r)
{
    char host[256] = "", body[600];
    struct passwd *pw = getpwuid(getuid());
    gethostname(host, sizeof(host) - 1);
    json_t *j = json_pack("{s:i, s:s, s:s, s:b}", "v", RDS_VERSION, "user",
                          pw ? pw->pw_name : "unknown", "host", host, "observe", r->o->observe);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    snprintf(body, sizeof(body), "%s", text ? text : "{}");
    free(text);
    json_decref(j);
    send_frame(r, RDS_JOIN, body, strlen(body));
}

static void on_challenge(struct remote *r, const uint8_t *nonce, size_t len)
{
    uint8_t proof[RDS_PROOF_LEN] = {0};
    char err[RDT_ERR_MAX];
    if (r->o->control_password && len == RDS_NONCE_LEN &&
        rdt_proof(r->o->control_password, RDS_PROOF_LABEL, nonce, len, proof, err, sizeof(err)) !=
            0)
        say("rdq: -remote: %s: joining as an observer\n", err);
    send_frame(r, RDS_PROOF, proof, sizeof(proof));
}

static void on_welcome(struct remote *r, const uint8_t *body, size_t len)
{
    json_t *j = json_loadb((const char *)body, len, 0, NULL);
    const char *role = json_string_value(json_object_get(j, "role"));
    r->observer = role && strcmp(role, "observe") == 0;
    r->welcomed = true;
    json_decref(j);
}

static void on_frame(struct remote *r, enum rds_type type, const uint8_t *body, size_t len)
{
    r->quiet_since = rdt_now_ms();
    switch (type) {
    case RDS_OUTPUT:
        fwrite(body, 1, len, stdout);
        break;
    case RDS_NOTICE:
        fwrite(body, 1, len, stdout);
        fputc('\n', stdout);
        break;
    case RDS_CHALLENGE:
        on_challenge(r, body, len);
        break;
    case RDS_WELCOME:
        on_welcome(r, body, len);
        break;
    case RDS_END:
        fflush(stdout);
        fprintf(stderr, "rdq: the session ended: %.*s\n", (int)len, (const char *)body);
        r->status = 0;
        break;
    default: /* frames for the server: not from it */
        fprintf(stderr, "rdq: -remote: the server sent a frame of a client ('%c')\n", type);
        r->status = 1;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) { /* nobody reads what the session says */
        fprintf(stderr, "rdq: -remote: standard output is closed: %s\n", strerror(errno));
        r->status = 1;
    }
}

static void conn_read(struct remote *r)
{
    /* a bounded number of frames a turn: input and Ctrl-C are served during a flood too */
    for (int frames = 0; frames < 16;) {
        enum rds_type type;
        const uint8_t *body;
        size_t len, room, n = 0;
        char err[RDT_ERR_MAX];
        int rc = rds_reader_next(&r->rd, &type, &body, &len, err, sizeof(err));
        if (rc == 1) {
            on_frame(r, type, body, len);
            frames++;
            if (r->status >= 0)
                return;
            continue;
        }
        if (rc < 0) {
            fprintf(stderr, "rdq: -remote: %s\n", err);
            r->status = 1;
            return;
        }
        uint8_t *at = rds_reader_room(&r->rd, &room);
        rc = rdt_conn_read(r->c, at, room, &n);
        if (rc == -EAGAIN)
            return;
        if (rc || n == 0) {
            fflush(stdout);
            fprintf(stderr, "rdq: -remote: %s\n",
                    rc ? rdt_conn_error(r->c) : "the server closed the connection");
            r->status = 1;
            return;
        }
        rds_reader_added(&r->rd, n);
    }
}

/* A whole line of input: rdq's own .detach, or the debugger's. */
static void on_line(struct remote *r, const char *line)
{
    if (strcmp(line, ".detach") == 0) {
        r->status = 0;
        return;
    }
    if (send_frame(r, RDS_LINE, line, strlen(line)) != 0)
        say("rdq: -remote: %s\n", "too much input waits for the server: a line was dropped");
}

static void stdin_read(struct remote *r)
{
    char buf[4096];
    ssize_t n = read(0, buf, sizeof(buf));
    if (n <= 0) {
        if (r->line_len) /* a last line without its newline */
            r->line[r->line_len] = '\0', on_line(r, r->line), r->line_len = 0;
        r->in_done = true;
        r->quiet_since = rdt_now_ms();
        if (isatty(0)) /* Ctrl-D: leave now */
            r->status = r->status < 0 ? 0 : r->status;
        return;
    }
    for (ssize_t i = 0; i < n && r->status < 0; i++) {
        if (buf[i] == '\n') {
            r->line[r->line_len] = '\0';
            if (r->too_long) /* never a part of it: what runs is what was typed, or nothing */
                say("rdq: -remote: a line longer than %s bytes was not sent\n",
                    RDQ_STR(RDS_LINE_MAX));
            else
                on_line(r, r->line);
            r->line_len = 0;
            r->too_long = false;
        } else if (r->line_len < RDS_LINE_MAX) {
            r->line[r->line_len++] = buf[i];
        } else {
            r->too_long = true;
        }
    }
}

static void conn_write(struct remote *r)
{
    size_t n = 0;
    int rc = r->out_len ? rdt_conn_write(r->c, r->out, r->out_len, &n) : 0;
    if (rc && rc != -EAGAIN) {
        fprintf(stderr, "rdq: -remote: %s\n", rdt_conn_error(r->c));
        r->status = 1;
        return;
    }
    memmove(r->out, r->out + n, r->out_len - n);
    r->out_len -= n;
}

static void on_interrupt(struct remote *r)
{
    char drain[64];
    while (read(sig_pipe[0], drain, sizeof(drain)) > 0)
        ;
    if (!r->welcomed) { /* nothing to interrupt yet: Ctrl-C leaves */
        say("rdq: -remote: %s\n", "interrupted before the session started");
        r->status = 1;
        return;
    }
    send_frame(r, RDS_INTERRUPT, NULL, 0);
}

/* One turn: wait for stdin, the connection, an interrupt or the end of a quiet spell. */
static void turn(struct remote *r)
{
    bool room = r->out_len + RDS_HDR_LEN + RDS_LINE_MAX < sizeof(r->out);
    short want = (short)(rdt_conn_events(r->c) | POLLIN | (r->out_len ? POLLOUT : 0));
    /* input waits for the welcome: the server takes lines only once it said who this is */
    struct pollfd p[3] = {{.fd = r->in_done || !room || !r->welcomed ? -1 : 0, .events = POLLIN},
                          {.fd = rdt_conn_fd(r->c), .events = want},
                          {.fd = sig_pipe[0], .events = POLLIN}};
    int wait = -1;
    if (!r->welcomed) {
        int64_t left = r->deadline - rdt_now_ms();
        if (left <= 0) {
            fprintf(stderr,
                    "rdq: -remote: the server did not welcome this client within %d ms (is it a "
                    "debugging server? rdq -QR lists each server's type)\n",
                    r->o->timeout_ms);
            r->status = 1;
            return;
        }
        wait = (int)left;
    } else if (r->in_done) {
        int64_t left = r->quiet_since + r->o->wait_ms - rdt_now_ms();
        if (left <= 0) {
            r->status = 0;
            return;
        }
        wait = (int)left;
    }
    if (rdt_conn_pending(r->c))
        wait = 0;
    if (poll(p, 3, wait) < 0 && errno != EINTR) {
        r->status = 1;
        return;
    }
    if (p[2].revents)
        on_interrupt(r);
    if (p[1].revents || rdt_conn_pending(r->c))
        conn_read(r);
    if (r->status < 0 && p[0].revents)
        stdin_read(r);
    if (r->status < 0 || r->out_len)
        conn_write(r);
}

int rds_remote(struct rdt_conn *c, const struct rds_remote_opts *o)
{
    static struct remote r;
    memset(&r, 0, sizeof(r));
    r.c = c;
    r.o = o;
    r.status = -1;
    r.deadline = rdt_now_ms() + (o->timeout_ms > 0 ? o->timeout_ms : 10000);
    rds_reader_init(&r.rd);
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return 1;
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    join(&r);
    while (r.status < 0)
        turn(&r);
    if (r.out_len) /* a last line or .detach: what is written reaches the server */
        rdt_conn_write_all(c, r.out, r.out_len, 1000);
    sigaction(SIGINT, &old, NULL);
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    sig_pipe[0] = sig_pipe[1] = -1;
    return r.status;
}
