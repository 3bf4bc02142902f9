/* The owner of a serial line: one process a line end, which every rdq process that serves or
 * dials a channel of that line reaches over a unix socket in the pipe directory. The first user
 * starts it (a process of its own, detached); it ends when its last user has gone.
 *
 * On the line, each channel carries one connection at a time, in frames (comframe.h): DATA in
 * order of seq, each acknowledged by an ACK that also says how much more the receiver takes (its
 * window), so that a stopped reader on one channel never blocks another; what is not
 * acknowledged in time is sent again (go-back-N), so that frames lost to garbled or dropped bytes
 * cost time, not data. CLOSE takes a seq of its own, as TCP's FIN does.
 *
 * Users speak one line to the owner: "RDQCOM 1 SERVE <channel> <baud>" or "RDQCOM 1 DIAL
 * <channel> <baud> <timeout ms>", and read "OK" or "ERR <why>". A dialer's socket then carries its
 * connection; a server's stays to receive, for each client, a socket of its own (SCM_RIGHTS).
 * A dialer's OK names its connection ("OK 17"), so that one that reads the end can ask, with
 * "RDQCOM 1 HOW 17", whether it was lost rather than ended. */
#include "comframe.h"
#include "internal.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define FRAG 1024                        /* DATA payload at most */
#define RBUF (16 * 1024)                 /* a channel's receive buffer: the window it offers */
#define QMAX 64                          /* frames of a channel not acknowledged yet */
#define LINE_OUT (64 * 1024)             /* the line's output queue */
#define LINE_LOW (2 * RDT_COM_FRAME_MAX) /* channels add DATA while the queue is below this */
#define TICK_MS 20
#define RTO_MIN_MS 250   /* the margin of a wait computed from the line's rate */
#define RTO_FLOOR_MS 20  /* the margin of one computed from round trips measured */
#define RTO_MAX_MS 2000  /* backing off stops here (unless the line needs longer) */
#define GIVE_UP_MS 10000 /* a connection whose frames go unacknowledged this long is ended... */
#define GIVE_UP_TRIES 6  /* ... once they have gone again so many times in a row */
#define IDLE_EXIT_MS 300
#define COM_ANSWER_GRACE_MS                                                                        \
    1000 /* the owner answers by the deadline: a user waits so much more                           \
          */
#define USERS_MAX 256
#define REQUEST_MS 10000 /* a user has this long to send its request */

/* ---- Sequence numbers (16 bits, wrapping) ---- */

static bool seq_before(uint16_t a, uint16_t b)
{
    return (int16_t)(a - b) < 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- State ---- */

struct line;

struct user {
    struct line *ln;
    int fd;
    struct event *ev;
    char in[160];
    size_t in_len;
    int serving;   /* the channel it serves, or -1 */
    int64_t since; /* when it came */
    LIST_ENTRY(user) link;
};

struct sent {
    int64_t at; /* when it went */
    bool again; /* it went more than once: its ACK times nothing (Karn) */
    uint16_t seq;
    uint8_t type; /* DATA or CLOSE */
    uint16_t len;
    uint8_t data[FRAG];
};

enum cstate { C_IDLE, C_OPENING, C_OPEN };

struct chan {
    struct line *ln;
    uint8_t n;
    struct user *server;
    enum cstate state;
    bool acceptor;
    int fd; /* the connection's local end */
    struct event *ev;
    short armed;
    int64_t deadline; /* opening: the dialer's timeout */
    int64_t rto_at;   /* when what is unacknowledged goes again */
    int64_t progress; /* the last acknowledgement that released a frame */
    /* sending */
    uint16_t snd_next;
    uint32_t peer_wnd; /* bytes the peer takes beyond its last ACK */
    struct sent *q;    /* QMAX frames from qhead, qn of them */
    unsigned qhead, qn;
    size_t inflight; /* bytes of DATA in q */
    bool local_eof;
    /* receiving */
    uint16_t rcv_next;
    uint8_t *rbuf;
    struct sent *early; /* frames that came before one still missing (by seq % QMAX) */
    size_t rlen;
    bool fin_rcvd, shut_wr, ack_due;
    uint32_t adv_wnd;     /* the window last advertised */
    int64_t acked_at;     /* when the last ACK went */
    int64_t heard_at;     /* when the last frame of this channel came */
    unsigned dupacks;     /* ACKs that released nothing since the last that did */
    int64_t srtt, rttvar; /* the round trip, measured (ms; srtt 0: not yet) */
    unsigned backoff;     /* timeouts in a row: each doubles the next wait */
    bool fast_resent;     /* a gap was resent on duplicate ACKs: not again until progress */
    bool recovering;      /* frames were resent: each ACK that advances resends the next gap */
    uint16_t recover_seq; /* ... until one acknowledges this */
    uint32_t serial;      /* the connection's number on this end of the line */
};

/* A connection that ended otherwise than by both ends' CLOSE, and why: for its dialer, which
 * reads only an end on its socket, to ask (HOW). */
struct failed {
    uint32_t serial;
    char why[200];
};
#define FAILED_KEPT 16

struct line {
    struct event_base *base;
    struct rdt_serial *ser;
    char dev[RDT_COMPORT_MAX + 1];
    uint32_t baud;
    int lfd;
    struct event *line_rev, *line_wev, *listen_ev, *tick_ev;
    struct rdt_com_decoder dec;
    uint8_t out[LINE_OUT];
    size_t out_len;
    struct chan ch[RDT_COM_CHANNELS];
    LIST_HEAD(, user) users;
    unsigned nusers;
    int64_t idle_since;
    bool dead;
    uint32_t serials;                  /* connections so far */
    struct failed failed[FAILED_KEPT]; /* the latest that failed, a ring */
    unsigned failed_next;
};

static void chan_arm(struct chan *c);
static void chan_reset(struct chan *c);
static void take_early(struct chan *c);

/* ---- The line ---- */

static void line_flush(struct line *ln)
{
    while (ln->out_len) {
        ssize_t n = write(rdt_serial_fd(ln->ser), ln->out, ln->out_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0) {
            ln->dead = true;
            event_base_loopbreak(ln->base);
            return;
        }
        memmove(ln->out, ln->out + n, ln->out_len - (size_t)n);
        ln->out_len -= (size_t)n;
    }
    if (ln->out_len)
        event_add(ln->line_wev, NULL);
    else
        event_del(ln->line_wev);
}

/* Queues a frame for the line; false when the queue has no room for it. */
static bool line_send(struct line *ln, uint8_t chan, uint8_t type, uint16_t seq,
                      const void *payload, uint16_t len)
{
    if (ln->out_len + RDT_COM_FRAME_MAX > sizeof(ln->out))
        return false;
    struct rdt_com_frame f = {chan, type, seq, len, payload};
    ln->out_len += rdt_com_encode(&f, ln->out + ln->out_len);
    return true;
}

static void send_text(struct line *ln, uint8_t chan, uint8_t type, const char *text)
{
    line_send(ln, chan, type, 0, text, (uint16_t)strnlen(text, FRAG));
}

static void send_ack(struct chan *c)
{
    uint8_t w[4];
    c->adv_wnd = (uint32_t)(RBUF - c->rlen);
    put32(w, c->adv_wnd);
    if (line_send(c->ln, c->n, RDT_COM_ACK, c->rcv_next, w, 4)) {
        c->ack_due = false;
        c->acked_at = rdt_now_ms();
    }
}

/* ---- Channels ---- */

static bool chan_can_send(const struct chan *c)
{
    return c->state == C_OPEN && !c->local_eof && c->qn < QMAX && c->inflight < c->peer_wnd &&
           c->ln->out_len < LINE_LOW;
}

static struct sent *q_push(struct chan *c, uint8_t type)
{
    struct sent *s = &c->q[(c->qhead + c->qn++) % QMAX];
    s->seq = c->snd_next++;
    s->type = type;
    s->len = 0;
    s->at = rdt_now_ms();
    s->again = false;
    return s;
}

static int64_t rto_ms(const struct line *ln, size_t bytes)
{
    /* the time the line needs for the queue and the frames in flight, twice, and a margin */
    int64_t ms = (int64_t)(ln->out_len + bytes) * 10 * 1000 / (ln->baud ? ln->baud : 9600);
    return 2 * ms + RTO_MIN_MS;
}

/* The wait before what is not acknowledged goes again: from the round trips measured (as TCP's
 * srtt + 4 rttvar), else from the line's rate; never less than the line needs to carry what is
 * queued and in flight (an early round trip of a small frame says nothing of a full window at
 * 115200 baud); doubled for each timeout in a row, up to RTO_MAX_MS, so that a burst of noise
 * that takes a frame and its next copies costs a few tries, not the connection. */
static int64_t chan_rto(const struct chan *c)
{
    const struct line *ln = c->ln;
    int64_t carry = (int64_t)(ln->out_len + c->inflight + RDT_COM_FRAME_MAX) * 10 * 1000 /
                        (ln->baud ? ln->baud : 9600) +
                    RTO_FLOOR_MS;
    int64_t rto = c->srtt ? c->srtt + 4 * c->rttvar + RTO_FLOOR_MS : rto_ms(ln, c->inflight);
    rto = rto > carry ? rto : carry;
    int64_t most = rto > RTO_MAX_MS ? rto : RTO_MAX_MS;
    rto <<= c->backoff < 4 ? c->backoff : 4;
    return rto < most ? rto : most;
}

static void rtt_sample(struct chan *c, int64_t ms)
{
    if (!c->srtt) {
        c->srtt = ms ? ms : 1;
        c->rttvar = ms / 2;
        return;
    }
    int64_t d = ms > c->srtt ? ms - c->srtt : c->srtt - ms;
    c->rttvar = (3 * c->rttvar + d) / 4;
    c->srtt = (7 * c->srtt + ms) / 8;
    if (!c->srtt)
        c->srtt = 1;
}

static void chan_read(struct chan *c)
{
    while (chan_can_send(c)) {
        size_t room = c->peer_wnd - c->inflight;
        struct sent *s = &c->q[(c->qhead + c->qn) % QMAX];
        ssize_t n = read(c->fd, s->data, room < FRAG ? room : FRAG);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (c->qn == 0)
            c->rto_at = rdt_now_ms() + chan_rto(c), c->progress = rdt_now_ms();
        if (n <= 0) { /* the local end is done sending (or gone) */
            c->local_eof = true;
            s = q_push(c, RDT_COM_CLOSE);
            line_send(c->ln, c->n, RDT_COM_CLOSE, s->seq, NULL, 0);
            return;
        }
        s = q_push(c, RDT_COM_DATA);
        s->len = (uint16_t)n;
        c->inflight += (size_t)n;
        line_send(c->ln, c->n, RDT_COM_DATA, s->seq, s->data, s->len);
    }
}

/* The other end's end, passed on once all it sent is delivered. */
static void pass_end(struct chan *c)
{
    if (c->fin_rcvd && !c->rlen && !c->shut_wr) {
        shutdown(c->fd, SHUT_WR);
        c->shut_wr = true;
    }
}

static void chan_write(struct chan *c)
{
    while (c->rlen) {
        ssize_t n = write(c->fd, c->rbuf, c->rlen);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0) { /* the local reader is gone: what comes is dropped */
            c->rlen = 0;
            break;
        }
        memmove(c->rbuf, c->rbuf + n, c->rlen - (size_t)n);
        c->rlen -= (size_t)n;
    }
    take_early(c); /* room again for what came early */
    /* the window opened again: say so before the sender waits for a retransmission */
    if (c->adv_wnd < RBUF / 2 && RBUF - c->rlen >= RBUF / 2)
        c->ack_due = true;
    pass_end(c);
}

/* Done when both ends have said their end, all of it acknowledged and delivered. */
static void chan_check_done(struct chan *c)
{
    if (c->state == C_OPEN && c->local_eof && c->qn == 0 && c->fin_rcvd && !c->rlen)
        chan_reset(c);
}

static void chan_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct chan *c = arg;
    if (what & EV_WRITE)
        chan_write(c);
    if (what & EV_READ)
        chan_read(c);
    if (c->ack_due)
        send_ack(c);
    line_flush(c->ln);
    chan_check_done(c);
    if (c->state != C_IDLE)
        chan_arm(c);
}

static void chan_arm(struct chan *c)
{
    pass_end(c); /* a CLOSE may come when nothing is left to write: no write event says so */
    short want = (chan_can_send(c) ? EV_READ : 0) | (c->rlen ? EV_WRITE : 0);
    if (want == c->armed && (want == 0 || event_pending(c->ev, EV_READ | EV_WRITE, NULL)))
        return;
    event_del(c->ev);
    c->armed = want;
    if (want) {
        event_assign(c->ev, c->ln->base, c->fd, want, chan_cb, c);
        event_add(c->ev, NULL);
    }
}

static int chan_start(struct chan *c, int fd, bool acceptor)
{
    c->q = calloc(QMAX, sizeof(*c->q));
    c->rbuf = malloc(RBUF);
    c->early = calloc(QMAX, sizeof(*c->early));
    c->ev = event_new(c->ln->base, -1, 0, chan_cb, c);
    if (!c->q || !c->rbuf || !c->early || !c->ev) {
        free(c->q);
        free(c->rbuf);
        free(c->early);
        c->early = NULL;
        if (c->ev)
            event_free(c->ev);
        c->q = NULL, c->rbuf = NULL, c->ev = NULL;
        return -ENOMEM;
    }
    c->fd = fd;
    c->acceptor = acceptor;
    if (++c->ln->serials == 0)
        c->ln->serials = 1; /* 0 is none */
    c->serial = c->ln->serials;
    c->snd_next = c->rcv_next = 0;
    c->qhead = c->qn = 0;
    c->inflight = c->rlen = 0;
    c->peer_wnd = RBUF;
    c->adv_wnd = RBUF;
    c->local_eof = c->fin_rcvd = c->shut_wr = c->ack_due = false;
    c->armed = 0;
    c->progress = c->acked_at = c->heard_at = rdt_now_ms();
    c->dupacks = 0;
    c->fast_resent = false;
    c->srtt = c->rttvar = 0;
    c->backoff = 0;
    c->recovering = false;
    return 0;
}

static void chan_reset(struct chan *c)
{
    if (c->ev)
        event_free(c->ev);
    if (c->fd >= 0)
        close(c->fd);
    free(c->q);
    free(c->rbuf);
    free(c->early);
    c->ev = NULL, c->q = NULL, c->rbuf = NULL, c->early = NULL;
    c->fd = -1;
    c->state = C_IDLE;
    c->ln->idle_since = rdt_now_ms();
}

/* Ends a connection that failed, and keeps why for its dialer to ask. */
static void chan_fail(struct chan *c, const char *why)
{
    struct failed *f = &c->ln->failed[c->ln->failed_next++ % FAILED_KEPT];
    f->serial = c->serial;
    snprintf(f->why, sizeof(f->why), "%s", why);
    chan_reset(c);
}

/* A line of the owner's to a user (OK, or ERR and why), on its socket; a user that is gone
 * learns nothing, and its end comes next. */
static void say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(int fd, const char *fmt, ...)
{
    char msg[RDT_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
    va_end(ap);
    n = n < 0 ? 0 : n > (int)sizeof(msg) - 2 ? (int)sizeof(msg) - 2 : n;
    msg[n] = '\n';
    if (send(fd, msg, (size_t)n + 1, MSG_NOSIGNAL) < 0) {
    }
}

/* ---- Frames from the line ---- */

static void on_open(struct chan *c, const struct rdt_com_frame *f)
{
    struct line *ln = c->ln;
    char why[200];
    uint32_t baud = f->len >= 4 ? get32(f->payload) : 0;
    if (c->state == C_OPEN && c->acceptor && c->rcv_next == 0) {
        line_send(ln, c->n, RDT_COM_OPENED, 0, NULL, 0); /* our OPENED was lost */
        return;
    }
    if (c->state == C_OPEN && c->acceptor)
        chan_reset(c); /* the line is in order: an OPEN after the dialer's data is a new
                          connection, and the dialer has left the old one */
    if (baud != ln->baud)
        snprintf(why, sizeof(why),
                 "com: the two ends of the line use different baud rates (%u and %u)", baud,
                 ln->baud);
    else if (!c->server)
        snprintf(why, sizeof(why), "com: nobody serves channel %u of %s", c->n, ln->dev);
    else if (c->state != C_IDLE)
        snprintf(why, sizeof(why), "com: channel %u of %s is busy (one connection at a time)", c->n,
                 ln->dev);
    else
        why[0] = '\0';
    int sv[2] = {-1, -1};
    if (!why[0] && socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        snprintf(why, sizeof(why), "com: %s", strerror(errno));
    if (!why[0]) {
        char one = 'C';
        struct iovec iov = {.iov_base = &one, .iov_len = 1};
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int))];
        } u;
        struct msghdr m = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = u.buf,
                           .msg_controllen = sizeof(u.buf)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &sv[1], sizeof(int));
        if (sendmsg(c->server->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) != 1 ||
            chan_start(c, sv[0], true) != 0) {
            snprintf(why, sizeof(why), "com: the server of channel %u cannot take it", c->n);
            close(sv[0]);
        }
        close(sv[1]);
    }
    if (why[0]) {
        send_text(ln, c->n, RDT_COM_REFUSED, why);
        return;
    }
    c->state = C_OPEN;
    line_send(ln, c->n, RDT_COM_OPENED, 0, NULL, 0);
    chan_arm(c);
}

/* Takes the frame that is next in order; false when it does not fit (it comes again). */
static bool take(struct chan *c, uint8_t type, const uint8_t *p, uint16_t len)
{
    if (type == RDT_COM_CLOSE) {
        c->fin_rcvd = true;
        c->rcv_next++;
        return true;
    }
    if (len > RBUF - c->rlen)
        return false; /* past the window we offered */
    memcpy(c->rbuf + c->rlen, p, len);
    c->rlen += len;
    c->rcv_next++;
    return true;
}

/* Takes the frames that came early and are next in order now. */
static void take_early(struct chan *c)
{
    for (;;) {
        struct sent *s = &c->early[c->rcv_next % QMAX];
        if (c->fin_rcvd || !s->type || s->seq != c->rcv_next || !take(c, s->type, s->data, s->len))
            return;
        s->type = 0;
    }
}

/* In order, a frame is taken with those that came before it; ahead of a gap, it is kept, so
 * that only what was lost has to come again. */
static void on_data(struct chan *c, const struct rdt_com_frame *f)
{
    if (c->state == C_IDLE && f->type == RDT_COM_CLOSE) {
        /* a CLOSE sent again after we are done: our last ACK was lost */
        uint8_t w[4] = {0, 0, RBUF >> 8, 0};
        line_send(c->ln, c->n, RDT_COM_ACK, (uint16_t)(f->seq + 1), w, 4);
        return;
    }
    c->ack_due = true; /* in order or not: the sender learns where we are */
    if (c->state != C_OPEN || c->fin_rcvd)
        return;
    uint16_t ahead = (uint16_t)(f->seq - c->rcv_next);
    if (ahead == 0 && take(c, f->type, f->payload, f->len)) {
        take_early(c);
    } else if (ahead > 0 && ahead < QMAX) {
        struct sent *s = &c->early[f->seq % QMAX];
        s->seq = f->seq;
        s->type = f->type;
        s->len = f->len;
        memcpy(s->data, f->payload, f->len);
    }
}

static void resend(struct chan *c);
static void user_free(struct user *u);

static void on_ack(struct chan *c, const struct rdt_com_frame *f)
{
    if (c->state != C_OPEN || f->len < 4)
        return;
    bool released = false;
    int64_t now = rdt_now_ms();
    while (c->qn && seq_before(c->q[c->qhead].seq, f->seq)) {
        if (!c->q[c->qhead].again && !seq_before(c->q[c->qhead].seq, (uint16_t)(f->seq - 1)))
            rtt_sample(c, now - c->q[c->qhead].at); /* the newest it acknowledges */
        c->inflight -= c->q[c->qhead].len;
        c->qhead = (c->qhead + 1) % QMAX;
        c->qn--;
        released = true;
    }
    c->peer_wnd = get32(f->payload);
    if (released) {
        c->progress = now;
        c->backoff = 0;
        c->rto_at = now + chan_rto(c);
        c->dupacks = 0;
        c->fast_resent = false;
        if (c->recovering && !seq_before(f->seq, c->recover_seq))
            c->recovering = false;
        else if (c->recovering) /* a partial ACK: the next gap (losses come in bursts) */
            resend(c);
    } else if (c->qn && f->seq == c->q[c->qhead].seq && ++c->dupacks >= 2 && !c->fast_resent) {
        /* the receiver has a gap where our oldest frame goes: send from there now rather
         * than at the timeout (once, until that brings progress) */
        c->fast_resent = true;
        resend(c);
    }
}

static void on_frame(const struct rdt_com_frame *f, void *arg)
{
    struct line *ln = arg;
    struct chan *c = &ln->ch[f->channel];
    c->heard_at = rdt_now_ms();
    switch (f->type) {
    case RDT_COM_OPEN:
        on_open(c, f);
        break;
    case RDT_COM_OPENED:
        if (c->state == C_OPENING) {
            c->state = C_OPEN;
            say(c->fd, "OK %u", (unsigned)c->serial);
        }
        break;
    case RDT_COM_REFUSED:
        if (c->state == C_OPENING) { /* a refusal for an open connection is a late one: kept */
            say(c->fd, "ERR %.*s", (int)f->len, (const char *)f->payload);
            chan_reset(c);
        }
        break;
    case RDT_COM_DATA:
    case RDT_COM_CLOSE:
        on_data(c, f);
        break;
    case RDT_COM_ACK:
        on_ack(c, f);
        break;
    case RDT_COM_PING:
        line_send(ln, f->channel, RDT_COM_PONG, f->seq, NULL, 0);
        break;
    default:
        break;
    }
    if (c->state != C_IDLE && c->ev)
        chan_arm(c);
}

static void line_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct line *ln = arg;
    uint8_t buf[8192];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* the line itself is gone (a pty whose other end closed reads EIO) */
        ln->dead = true;
        event_base_loopbreak(ln->base);
        return;
    }
    rdt_com_decode(&ln->dec, buf, (size_t)n, on_frame, ln);
    for (int i = 0; i < RDT_COM_CHANNELS; i++) {
        struct chan *c = &ln->ch[i];
        if (c->state == C_IDLE)
            continue;
        if (c->ack_due)
            send_ack(c);
        chan_check_done(c);
        if (c->state != C_IDLE)
            chan_arm(c);
    }
    line_flush(ln);
}

static void line_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct line *ln = arg;
    line_flush(ln);
    for (int i = 0; i < RDT_COM_CHANNELS; i++)
        if (ln->ch[i].state == C_OPEN)
            chan_arm(&ln->ch[i]); /* room on the line again */
}

/* ---- Timers: retransmissions, timeouts, the end ---- */

/* Sends the oldest frame not acknowledged again: the receiver keeps what came after a gap, so
 * the gap is all that has to come again. */
static void resend(struct chan *c)
{
    struct sent *s = &c->q[c->qhead];
    if (c->qn && line_send(c->ln, c->n, s->type, s->seq, s->data, s->len))
        s->again = true;
    if (!c->recovering)
        c->recover_seq = c->snd_next; /* recovery lasts until all sent by now is acknowledged */
    c->recovering = c->qn > 0;
    c->rto_at = rdt_now_ms() + chan_rto(c);
}

/* Whether frames came that wait for one still missing: the sender hears of it sooner. */
static bool has_gap(const struct chan *c)
{
    for (unsigned i = 0; i < QMAX; i++) {
        const struct sent *s = &c->early[i];
        uint16_t ahead = (uint16_t)(s->seq - c->rcv_next);
        if (s->type && ahead > 0 && ahead < QMAX)
            return true;
    }
    return false;
}

static void tick_chan(struct chan *c, int64_t now)
{
    struct line *ln = c->ln;
    if (c->state == C_OPENING && now >= c->deadline) {
        const struct rdt_com_counts *k = &ln->dec.counts;
        say(c->fd,
            "ERR com: no answer on %s within the time allowed (%llu valid frames, %llu "
            "bad, %llu bytes outside frames, at %u baud: are both ends at that rate, "
            "and is the other end's rdq running?)",
            ln->dev, (unsigned long long)k->frames,
            (unsigned long long)(k->bad_header + k->bad_length + k->bad_payload),
            (unsigned long long)k->skipped, ln->baud);
        chan_reset(c);
    } else if (c->state == C_OPENING && now >= c->rto_at) {
        uint8_t b[4];
        put32(b, ln->baud);
        line_send(ln, c->n, RDT_COM_OPEN, 0, b, 4);
        c->rto_at = now + rto_ms(ln, 0);
    } else if (c->state == C_OPEN && now - c->heard_at > GIVE_UP_MS) {
        /* the other end no longer answers (it ACKs every second while open): the local end sees
         * the end, and its dialer can learn why */
        char why[200];
        snprintf(why, sizeof(why),
                 "com: the connection on channel %u of %s was lost: nothing came from the other "
                 "end for %d s",
                 c->n, ln->dev, GIVE_UP_MS / 1000);
        chan_fail(c, why);
    } else if (c->state == C_OPEN && c->qn && c->backoff >= GIVE_UP_TRIES &&
               now - c->progress > GIVE_UP_MS) {
        char why[200];
        snprintf(why, sizeof(why),
                 "com: the connection on channel %u of %s was given up: the other end took "
                 "none of what went again %u times in %d s",
                 c->n, ln->dev, c->backoff, GIVE_UP_MS / 1000);
        chan_fail(c, why);
    } else if (c->state == C_OPEN && c->qn && now >= c->rto_at) {
        c->backoff++;
        resend(c);
    }
    if (c->state == C_OPEN && now - c->acked_at >= (has_gap(c) ? 100 : 1000))
        send_ack(c); /* now and then, for a window update or a last ACK that was lost */
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct line *ln = arg;
    int64_t now = rdt_now_ms();
    for (struct user *u = LIST_FIRST(&ln->users), *next; u; u = next) {
        next = LIST_NEXT(u, link);
        if (u->serving < 0 && now - u->since > REQUEST_MS)
            user_free(u); /* it came and asked nothing: its place goes to others */
    }
    bool busy = ln->nusers > 0;
    for (int i = 0; i < RDT_COM_CHANNELS; i++) {
        struct chan *c = &ln->ch[i];
        if (c->state != C_IDLE)
            tick_chan(c, now);
        busy |= c->state != C_IDLE || c->server;
    }
    line_flush(ln);
    for (int i = 0; i < RDT_COM_CHANNELS; i++)
        if (ln->ch[i].state == C_OPEN)
            chan_arm(&ln->ch[i]); /* the flush may have made room on the line */
    if (busy || ln->out_len)
        ln->idle_since = now;
    else if (now - ln->idle_since >= IDLE_EXIT_MS)
        event_base_loopbreak(ln->base); /* the last user has gone */
}

/* ---- Users ---- */

static void user_free(struct user *u)
{
    struct line *ln = u->ln;
    if (u->serving >= 0 && ln->ch[u->serving].server == u)
        ln->ch[u->serving].server = NULL;
    LIST_REMOVE(u, link);
    ln->nusers--;
    if (u->ev)
        event_free(u->ev);
    if (u->fd >= 0)
        close(u->fd);
    free(u);
}

/* Takes a user's request: SERVE keeps it; DIAL hands its socket to the channel. */
static void user_request(struct user *u)
{
    struct line *ln = u->ln;
    char verb[8];
    unsigned chan = 0, baud = 0, timeout = 0;
    int n = sscanf(u->in, "RDQCOM 1 %7s %u %u %u", verb, &chan, &baud, &timeout);
    if (n == 2 && strcmp(verb, "HOW") == 0) { /* how the connection `chan` (a serial) ended */
        const struct failed *f = NULL;
        for (unsigned i = 0; i < FAILED_KEPT && !f; i++)
            f = ln->failed[i].serial == chan && chan ? &ln->failed[i] : NULL;
        if (f)
            say(u->fd, "ERR %s", f->why);
        else
            say(u->fd, "OK");
        user_free(u);
        return;
    }
    bool serve = n >= 3 && strcmp(verb, "SERVE") == 0, dial = n == 4 && !strcmp(verb, "DIAL");
    struct chan *c = chan < RDT_COM_CHANNELS ? &ln->ch[chan] : NULL;
    if ((!serve && !dial) || !c) {
        say(u->fd, "ERR com: the line owner does not understand this request");
    } else if (baud != ln->baud) {
        say(u->fd, "ERR com: %s is open at %u baud, not %u", ln->dev, ln->baud, baud);
    } else if (serve && c->server) {
        say(u->fd, "ERR com: channel %u of %s is served already, by another process", chan,
            ln->dev);
    } else if (serve) {
        c->server = u;
        u->serving = (int)chan;
        say(u->fd, "OK");
        return;
    } else if (c->state != C_IDLE) {
        say(u->fd, "ERR com: channel %u of %s is busy on this end", chan, ln->dev);
    } else if (chan_start(c, u->fd, false) == 0) {
        u->fd = -1; /* the channel's now */
        c->state = C_OPENING;
        c->deadline = rdt_now_ms() + (timeout ? timeout : 10000);
        c->rto_at = 0; /* the OPEN goes at the next tick */
        tick_chan(c, rdt_now_ms());
        line_flush(ln);
    }
    user_free(u);
}

static void user_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct user *u = arg;
    if (u->serving >= 0) { /* a server's socket says nothing more: this is its end */
        char b[64];
        ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            user_free(u);
        return;
    }
    ssize_t n = recv(fd, u->in + u->in_len, sizeof(u->in) - 1 - u->in_len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        user_free(u);
        return;
    }
    u->in_len += (size_t)n;
    u->in[u->in_len] = '\0';
    if (strchr(u->in, '\n'))
        user_request(u);
    else if (u->in_len == sizeof(u->in) - 1)
        user_free(u); /* no request is that long */
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    struct line *ln = arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct user *u = ln->nusers < USERS_MAX ? calloc(1, sizeof(*u)) : NULL;
    if (u)
        u->ev = event_new(ln->base, fd, EV_READ | EV_PERSIST, user_cb, u);
    if (!u || !u->ev) {
        free(u);
        close(fd);
        return;
    }
    u->ln = ln;
    u->fd = fd;
    u->serving = -1;
    u->since = rdt_now_ms();
    LIST_INSERT_HEAD(&ln->users, u, link);
    ln->nusers++;
    event_add(u->ev, NULL);
}

/* ---- The owner process ---- */

static int listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path); /* we hold the lock: a socket file here is a dead owner's */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
        listen(fd, 64) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Runs the line until its last user has gone or the line fails; never returns. */
static void owner_main(const char *dev, uint32_t baud, const char *path, int ready)
{
    static struct line ln; /* large: not on the stack */
    char err[RDT_ERR_MAX];
    snprintf(ln.dev, sizeof(ln.dev), "%s", dev);
    ln.baud = baud;
    ln.base = event_base_new();
    LIST_INIT(&ln.users);
    rdt_com_decoder_init(&ln.dec);
    for (int i = 0; i < RDT_COM_CHANNELS; i++)
        ln.ch[i] = (struct chan){.ln = &ln, .n = (uint8_t)i, .fd = -1};
    int rc = ln.base ? rdt_serial_open(&ln.ser, dev, baud, err, sizeof(err)) : -ENOMEM;
    if (rc == 0 && (ln.lfd = listen_at(path)) < 0)
        rc = rdt_errf(-errno, err, sizeof(err), "com: the line owner's socket %s: %s", path,
                      strerror(errno));
    if (rc) {
        if (write(ready, err, strlen(err)) < 0)
            _exit(1);
        _exit(1);
    }
    ln.line_rev =
        event_new(ln.base, rdt_serial_fd(ln.ser), EV_READ | EV_PERSIST, line_read_cb, &ln);
    ln.line_wev = event_new(ln.base, rdt_serial_fd(ln.ser), EV_WRITE, line_write_cb, &ln);
    ln.listen_ev = event_new(ln.base, ln.lfd, EV_READ | EV_PERSIST, accept_cb, &ln);
    ln.tick_ev = event_new(ln.base, -1, EV_PERSIST, tick_cb, &ln);
    struct timeval tick = {0, TICK_MS * 1000};
    event_add(ln.line_rev, NULL);
    event_add(ln.listen_ev, NULL);
    event_add(ln.tick_ev, &tick);
    ln.idle_since = rdt_now_ms();
    if (write(ready, "ok", 2) != 2)
        _exit(1);
    close(ready);
    event_base_dispatch(ln.base);
    unlink(path); /* before the lock goes with this process: no one finds a dead socket */
    close(ln.lfd);
    for (int i = 0; i < RDT_COM_CHANNELS; i++)
        if (ln.ch[i].state == C_OPENING)
            say(ln.ch[i].fd, "ERR com: %s failed", dev);
    rdt_serial_close(ln.ser);
    _exit(ln.dead ? 1 : 0);
}

/* Starts the owner as a process of its own (not a child to reap), holding the lock; waits until
 * it listens, or says why it could not. */
static int spawn_owner(const char *dev, uint32_t baud, const char *path, int lockfd, char *err,
                       size_t errlen)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return rdt_errf(-errno, err, errlen, "com: %s", strerror(errno));
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        /* only the lock and the ready pipe stay open */
        /* out of the way first: the caller may have started with 0 to 2 closed */
        int lk = fcntl(lockfd, F_DUPFD_CLOEXEC, 10), rd = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(null, 1), dup2(null, 2);
        if (lk < 0 || rd < 0 || dup2(lk, 3) < 0 || dup2(rd, 4) < 0)
            _exit(1);
        close_range(5, ~0U, 0);
        signal(SIGPIPE, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_DFL);
        owner_main(dev, baud, path, 4);
    }
    close(p[1]);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    char msg[RDT_ERR_MAX] = "";
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    ssize_t n = pid > 0 && poll(&pf, 1, 5000) == 1 ? read(p[0], msg, sizeof(msg) - 1) : -1;
    close(p[0]);
    if (n == 2 && memcmp(msg, "ok", 2) == 0)
        return 0;
    msg[n > 0 ? n : 0] = '\0';
    return rdt_errf(-EIO, err, errlen, "%s", n > 0 ? msg : "com: the line owner did not start");
}

/* ---- Users: reaching the owner ---- */

/* <pipe dir>/com-<device, its slashes as underscores> */
static int owner_path(const char *dev, char *path, size_t len, char *err, size_t errlen)
{
    char name[RDT_COMPORT_MAX + 8];
    snprintf(name, sizeof(name), "com-%s", dev);
    for (char *p = name; *p; p++)
        if (*p == '/')
            *p = '_';
    int rc = rdt_pipe_path(name, path, len > 100 ? 100 : len, err, errlen);
    return rc ? rc : rdt_pipe_dir_make(path, err, errlen);
}

static int unix_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    int e = errno;
    if (fd >= 0)
        close(fd);
    return -e;
}

/* Connects to the owner of the line, starting it when none runs: the lock beside its socket
 * says who starts it; the others wait for its socket. */
static int owner_connect(const struct rdt_tstring *ts, int64_t deadline, char *err, size_t errlen)
{
    char path[108], lock[116];
    int rc = owner_path(ts->com_device, path, sizeof(path), err, errlen);
    if (rc)
        return rc;
    snprintf(lock, sizeof(lock), "%s.lock", path);
    for (;;) {
        int fd = unix_connect(path);
        if (fd >= 0)
            return fd;
        int lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lockfd < 0)
            return rdt_errf(-errno, err, errlen, "com: %s: %s", lock, strerror(errno));
        if (flock(lockfd, LOCK_EX | LOCK_NB) == 0) {
            fd = unix_connect(path); /* it may have come up meanwhile */
            if (fd < 0 && (rc = spawn_owner(ts->com_device, ts->baud, path, lockfd, err, errlen))) {
                close(lockfd);
                return rc;
            }
            close(lockfd); /* the owner holds it now */
            if (fd >= 0)
                return fd;
            continue;
        }
        close(lockfd);
        if (rdt_now_ms() >= deadline)
            return rdt_errf(-ETIMEDOUT, err, errlen,
                            "com: the owner of the line %s did not come up in time",
                            ts->com_device);
        poll(NULL, 0, 10); /* another process is starting it */
    }
}

/* ---- Users: the owner's answer, read without blocking ---- */

/* The layer of a user's request: its opening sends the request and reads the owner's answer
 * line (byte by byte: what follows is the connection's); an owner that was ending as we came
 * says nothing, and a new one is reached (started), once. */
struct answer {
    char dev[RDT_COMPORT_MAX + 1];
    const char *verb; /* DIAL or SERVE */
    int channel;
    uint32_t baud;
    int64_t deadline;
    char req[96];
    size_t req_len, req_off;
    char line[RDT_ERR_MAX];
    size_t got;
    bool retried;
    unsigned serial; /* the connection's number at the owner (0: it gave none) */
    bool asked;      /* how it ended */
    char err[RDT_ERR_MAX];
};

/* Reaches the owner (starting it when none runs) with the request ready to go: the bottom of
 * the stack. */
static int answer_connect(struct answer *a, struct rdt_conn **out)
{
    struct rdt_tstring ts = {.proto = RDT_COM, .baud = a->baud, .channel = a->channel};
    snprintf(ts.com_device, sizeof(ts.com_device), "%s", a->dev);
    int fd = owner_connect(&ts, a->deadline, a->err, sizeof(a->err));
    if (fd < 0)
        return fd;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int64_t left_ms = a->deadline - rdt_now_ms(); /* the owner's clock starts now: what is left */
    int n = snprintf(a->req, sizeof(a->req), "RDQCOM 1 %s %d %u %d\n", a->verb, a->channel, a->baud,
                     (int)(left_ms > 100 ? left_ms : 100));
    a->req_len = (size_t)n;
    a->req_off = a->got = 0;
    *out = rdt_sock_conn(&rdt_unix_ops, fd);
    if (!*out) {
        close(fd);
        return rdt_errf(-ENOMEM, a->err, sizeof(a->err), "out of memory");
    }
    return 0;
}

/* What the owner's answer line says: 0 for OK, else why not. */
static int answer_parse(struct answer *a)
{
    a->line[a->got] = '\0';
    a->line[strcspn(a->line, "\n")] = '\0';
    unsigned serial = 0;
    if (strcmp(a->line, "OK") == 0 || sscanf(a->line, "OK %u", &serial) == 1) {
        a->serial = serial;
        return 0;
    }
    if (strncmp(a->line, "ERR ", 4) == 0)
        return rdt_errf(strstr(a->line, "nobody serves")  ? -ECONNREFUSED
                        : strstr(a->line, "busy")         ? -EBUSY
                        : strstr(a->line, "no answer on") ? -ETIMEDOUT
                                                          : -EPROTO,
                        a->err, sizeof(a->err), "%s", a->line + 4);
    return rdt_errf(-EPROTO, a->err, sizeof(a->err),
                    "com: the owner of the line %s ended the connection", a->dev);
}

/* Sends what is left of the request, then reads the answer as far as it came. */
static int answer_step(struct rdt_conn *c, struct answer *a)
{
    while (a->req_off < a->req_len) {
        size_t n = 0;
        int rc = rdt_conn_write(c->next, a->req + a->req_off, a->req_len - a->req_off, &n);
        if (rc)
            return rc == -EAGAIN ? rc : -ECONNRESET;
        a->req_off += n;
    }
    while (a->got < sizeof(a->line) - 1 && (a->got == 0 || a->line[a->got - 1] != '\n')) {
        size_t n = 0;
        int rc = rdt_conn_read(c->next, a->line + a->got, 1, &n);
        if (rc == -EAGAIN)
            return rc;
        if (rc || n == 0)
            return -ECONNRESET;
        a->got++;
    }
    return answer_parse(a);
}

static int answer_open(struct rdt_conn *c)
{
    struct answer *a = c->ctx;
    for (;;) {
        int rc = answer_step(c, a);
        if (rc != -ECONNRESET)
            return rc;
        if (a->got || a->retried)
            return rdt_errf(rc, a->err, sizeof(a->err), "com: the owner of the line %s %s", a->dev,
                            a->got ? "ended the connection" : "ended before it answered");
        a->retried = true; /* it was ending as we came: a new one, once */
        struct rdt_conn *next = NULL;
        if ((rc = answer_connect(a, &next)))
            return rc;
        rdt_conn_free(c->next);
        c->next = next;
        c->fd = next->fd;
    }
}

static void answer_close(struct rdt_conn *c)
{
    free(c->ctx);
}

/* Asks the owner how connection `serial` ended: 0 when well (or when it cannot say), else
 * -ECONNRESET and why in a->err. Local and quick, so waited for: 200 ms at most. */
static int answer_how(struct answer *a)
{
    char path[108], req[48], line[RDT_ERR_MAX], err[RDT_ERR_MAX];
    if (owner_path(a->dev, path, sizeof(path), err, sizeof(err)) != 0)
        return 0;
    int fd = unix_connect(path);
    if (fd < 0)
        return 0; /* it has gone: nothing to learn */
    struct timeval tv = {0, 200 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int n = snprintf(req, sizeof(req), "RDQCOM 1 HOW %u\n", a->serial);
    size_t got = 0;
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        ssize_t r;
        while (got < sizeof(line) - 1 && (r = recv(fd, line + got, sizeof(line) - 1 - got, 0)) > 0)
            got += (size_t)r;
    }
    close(fd);
    line[got] = '\0';
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "ERR ", 4) != 0)
        return 0;
    return rdt_errf(-ECONNRESET, a->err, sizeof(a->err), "%s", line + 4);
}

/* The end of a connection (`rc`: an end, or a reset) that failed reads as the reason the owner
 * gives, not as an end. */
static int answer_end(struct answer *a, int rc)
{
    if (!a->serial || a->asked)
        return rc;
    a->asked = true;
    int how = answer_how(a);
    return how ? how : rc;
}

static int answer_read(struct rdt_conn *c, void *buf, size_t len, size_t *nread)
{
    int rc = rdt_conn_read(c->next, buf, len, nread);
    if ((rc == 0 && *nread == 0 && len) || rc == -ECONNRESET || rc == -EPIPE)
        rc = answer_end(c->ctx, rc);
    return rc;
}

static int answer_write(struct rdt_conn *c, const void *buf, size_t len, size_t *nwritten)
{
    int rc = rdt_conn_write(c->next, buf, len, nwritten);
    if (rc == -ECONNRESET || rc == -EPIPE)
        rc = answer_end(c->ctx, rc);
    return rc;
}

static short answer_events(struct rdt_conn *c)
{
    struct answer *a = c->ctx;
    if (c->ready)
        return rdt_conn_events(c->next);
    return a->req_off < a->req_len ? POLLOUT : POLLIN;
}

static const char *answer_last_error(struct rdt_conn *c)
{
    struct answer *a = c->ctx;
    return a->err[0] ? a->err : rdt_conn_error(c->next);
}

static const struct rdt_ops answer_ops = {
    .name = "com",
    .open = answer_open,
    .close = answer_close,
    .read = answer_read,
    .write = answer_write,
    .events = answer_events,
    .last_error = answer_last_error,
};

/* The owner reached and the request on its way: a stack whose opening is the owner's answer. */
static int owner_request(const struct rdt_tstring *ts, const char *verb, int64_t deadline,
                         struct rdt_conn **out, char *err, size_t errlen)
{
    *out = NULL;
    struct answer *a = calloc(1, sizeof(*a));
    if (!a)
        return rdt_errf(-ENOMEM, err, errlen, "out of memory");
    *a = (struct answer){
        .verb = verb, .channel = ts->channel, .baud = ts->baud, .deadline = deadline};
    snprintf(a->dev, sizeof(a->dev), "%s", ts->com_device);
    struct rdt_conn *next = NULL;
    int rc = answer_connect(a, &next);
    struct rdt_conn *c = rc ? NULL : rdt_conn_push(&answer_ops, a, next);
    if (!c) {
        rc = rc ? rdt_errf(rc, err, errlen, "%s", a->err)
                : rdt_errf(-ENOMEM, err, errlen, "out of memory");
        rdt_conn_free(next);
        free(a);
        return rc;
    }
    *out = c;
    return 0;
}

int rdt_com_dial_async(struct rdt_dialer **out, struct event_base *base,
                       const struct rdt_tstring *ts, const char *password, enum rdt_role role,
                       int timeout_ms, int64_t deadline, rdt_dial_cb cb, void *arg, char *err,
                       size_t errlen)
{
    *out = NULL;
    int64_t by = rdt_now_ms() + timeout_ms;
    if (deadline && deadline < by)
        by = deadline;
    struct rdt_conn *c = NULL;
    int rc = owner_request(ts, "DIAL", by, &c, err, errlen);
    if (rc)
        return rc;
    char what[RDT_COMPORT_MAX + 32];
    snprintf(what, sizeof(what), "the owner of the line %s", ts->com_device);
    return rdt_dial_over_grace(out, base, c, what, ts, password, role, timeout_ms, deadline,
                               COM_ANSWER_GRACE_MS, cb, arg, err, errlen);
}

int rdt_com_serve(const struct rdt_tstring *ts, char *err, size_t errlen)
{
    int64_t deadline = rdt_now_ms() + 5000;
    struct rdt_conn *c = NULL;
    int rc = owner_request(ts, "SERVE", deadline, &c, err, errlen);
    if (rc)
        return rc;
    rc = rdt_conn_open_wait(c, 5000 + COM_ANSWER_GRACE_MS);
    if (rc == -ETIMEDOUT)
        rdt_errf(rc, err, errlen, "com: the owner of the line %s did not answer in time",
                 ts->com_device);
    else if (rc)
        rdt_errf(rc, err, errlen, "%s", rdt_conn_error(c));
    int fd = rc ? rc : fcntl(rdt_conn_fd(c), F_DUPFD_CLOEXEC, 0); /* the control socket */
    if (fd < 0 && !rc)
        rdt_errf(fd = -errno, err, errlen, "com: %s", strerror(errno));
    rdt_conn_free(c);
    return fd;
}

int rdt_com_accept(int ctl, int *fd)
{
    char one;
    struct iovec iov = {.iov_base = &one, .iov_len = 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    *fd = -1;
    ssize_t n = recvmsg(ctl, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
    if (n == 0)
        return 0;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
        memcpy(fd, CMSG_DATA(cm), sizeof(int));
    if (*fd < 0)
        return -EAGAIN; /* a byte without a socket: nothing to take */
    fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) | O_NONBLOCK);
    return 1;
}
