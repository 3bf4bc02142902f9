/* rdbroker's core: registrations that live exactly as long as their connection, and queries
 * answered from them, on one event loop. */
#include "broker.h"
#include "dnssd.h"
#include "dnsupdate.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#define CONNS_MAX 4096      /* connections served at once on the query endpoints ... */
#define REG_CONNS_MAX 4096  /* ... and, apart from them, on the registration socket */
#define PEER_CONNS_MAX 256  /* connections of one peer (an address, or a uid but root's) */
#define RECORDS_PER_CONN 64 /* records one registration connection may hold */
#define RECORDS_PER_UID 512 /* records of one user but root */
#define OUT_MAX (4 * RDB_FRAME_MAX)
#define LIST_ROOM (RDB_FRAME_MAX - 64) /* what rows may take of a LIST's body */

struct bconn;

struct record {
    unsigned id;
    struct rdb_entry e;
    pid_t pid;
    uid_t uid;
    bool privileged;
    struct bconn *owner;
    TAILQ_ENTRY(record) link;
};

struct bconn {
    struct rdb_broker *b;
    struct rdt_conn *conn;
    struct event *ev;
    struct rdb_reader rd;
    uint8_t *out;
    size_t out_len;
    bool local; /* on the registration socket: credentials known */
    bool closing;
    short ev_want; /* the events c->ev waits for now (-1: not added yet) ... */
    int ev_ms;     /* ... and its timeout (0: none) */
    bool relayed;  /* handed to a relay: the connection is no longer this one's */
    struct ucred cred;
    bool privileged;
    unsigned nrecords;
    char peer[64];
    LIST_ENTRY(bconn) link;
};

/* A client joined to a local pipe (rdbroker -relay). */
struct relay {
    struct rdb_broker *b;
    struct rdt_splice *sp;
    LIST_ENTRY(relay) link;
};

#define RELAYS_MAX 256

struct rdb_broker {
    struct event_base *base;
    char pipe_dir[108];
    LIST_HEAD(, relay) relays;
    unsigned nrelays;
    struct rdb_config cfg;
    struct rdt_server *reg;
    struct rdt_server *query[8];
    int nquery;
    struct rdb_dnsup *dns; /* the records in the site's DNS (cfg.dns_server) */
    LIST_HEAD(, bconn) conns;
    unsigned nconns;
    unsigned nconns_reg;          /* of which on the registration socket */
    TAILQ_HEAD(, record) records; /* in the order of registration, as listings show them */
    unsigned nrecords;
    unsigned next_id;
    /* The encoded LIST of the discoverable records, per filter, until a record comes or goes:
     * what every remote query and most local ones are answered with. */
    struct {
        uint8_t *frame;
        size_t len;
    } lists[3];
    struct rdb_dnssd *dnssd; /* on the LAN (NULL: -no-dnssd) */
};

#define logf_(b, prio, ...) rdb_logf((b)->cfg.log, (b)->cfg.log_arg, prio, __VA_ARGS__)

/* ---- Records ---- */

static void lists_forget(struct rdb_broker *b)
{
    for (int f = 0; f < 3; f++) {
        free(b->lists[f].frame);
        b->lists[f].frame = NULL;
    }
    rdb_dnssd_changed(b->dnssd);
}

static void record_drop(struct rdb_broker *b, struct record *r)
{
    lists_forget(b);
    TAILQ_REMOVE(&b->records, r, link);
    b->nrecords--;
    r->owner->nrecords--;
    logf_(b, LOG_INFO, "gone: %s - %s (pid %d)", rdb_kind_title(r->e.kind), r->e.advert,
          (int)r->pid);
    free(r);
}

/* Whether `asker` sees r (asker NULL: anyone, local or remote). */
static bool listable(const struct record *r, const struct bconn *asker)
{
    if (r->e.hidden || r->e.clicon)
        return false;
    return r->privileged || (asker && asker->local && asker->cred.uid == r->uid);
}

void rdb_broker_each_listed(const struct rdb_broker *b,
                            void (*fn)(unsigned id, const struct rdb_entry *e, void *arg),
                            void *arg)
{
    const struct record *r;
    TAILQ_FOREACH(r, &b->records, link)
    if (listable(r, NULL))
        fn(r->id, &r->e, arg);
}

/* ---- Connections ---- */

static void conn_free(struct bconn *c)
{
    struct rdb_broker *b = c->b;
    for (struct record *r = TAILQ_FIRST(&b->records), *next; r; r = next) {
        next = TAILQ_NEXT(r, link);
        if (r->owner == c)
            record_drop(b, r);
    }
    LIST_REMOVE(c, link);
    b->nconns--;
    b->nconns_reg -= c->local;
    event_free(c->ev);
    rdt_conn_free(c->conn);
    rdb_reader_free(&c->rd);
    free(c->out);
    free(c);
}

static void conn_event(struct bconn *c, short what);

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    conn_event(arg, what);
}

/* Writes what is queued, then waits for what comes next: requests (unless closing), room to
 * write the rest, or the end of an idle or stalled connection. */
static int conn_flush(struct bconn *c)
{
    size_t off = 0;
    int rc = 0;
    while (off < c->out_len) {
        size_t n = 0;
        rc = rdt_conn_write(c->conn, c->out + off, c->out_len - off, &n);
        if (rc)
            break;
        off += n;
    }
    if (off) {
        memmove(c->out, c->out + off, c->out_len - off);
        c->out_len -= off;
    }
    if (rc && rc != -EAGAIN)
        return rc;
    if (c->closing && !c->out_len)
        return 0; /* done: the caller frees it */
    short want = (short)((c->closing ? 0 : EV_READ) | (c->out_len ? EV_WRITE : 0));
    /* a connection that holds no record and sends nothing is closed after a while, as is one
     * that does not read what it is sent */
    int ms = c->out_len || !c->nrecords ? c->b->cfg.idle_ms : 0;
    if (want == c->ev_want && ms == c->ev_ms && !c->out_len)
        return 0; /* EV_PERSIST: the idle timeout starts again at every event */
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    if (want != c->ev_want || ms != c->ev_ms) {
        /* deleted first: event_add without a timeout would keep the old one */
        if (c->ev_want >= 0)
            event_del(c->ev);
        event_assign(c->ev, c->b->base, c->conn->fd, want | EV_PERSIST, conn_cb, c);
        c->ev_want = want;
        c->ev_ms = ms;
    }
    return event_add(c->ev, ms ? &tv : NULL) == 0 ? 0 : -ENOMEM;
}

/* Queues `len` bytes of `frame` for the peer, writing at once what the socket takes. A frame
 * that could not be made (NULL) ends the connection. */
static void conn_send_frame(struct bconn *c, const uint8_t *frame, size_t len)
{
    if (!frame) {
        c->closing = true;
        return;
    }
    size_t n = 0;
    if (!c->out_len && rdt_conn_write(c->conn, frame, len, &n) != 0)
        n = 0;
    if (n == len)
        return;
    uint8_t *nb = c->out_len + len - n <= OUT_MAX ? realloc(c->out, c->out_len + len - n) : NULL;
    if (!nb) {
        c->closing = true; /* a client that does not read its answers is dropped */
        return;
    }
    memcpy(nb + c->out_len, frame + n, len - n);
    c->out = nb;
    c->out_len += len - n;
}

static void conn_send(struct bconn *c, enum rdb_type type, json_t *body)
{
    size_t len;
    uint8_t *frame = rdb_frame_encode(type, body, &len);
    json_decref(body);
    conn_send_frame(c, frame, len);
    free(frame);
}

/* Answers a bad message: says why, and ends this connection once that is written. */
static void conn_refuse(struct bconn *c, const char *why)
{
    logf_(c->b, LOG_NOTICE, "%s: %s", c->peer, why);
    conn_send(c, RDB_ERROR, json_pack("{s:s}", "message", why));
    c->closing = true;
}

/* ---- Messages ---- */

static unsigned uid_records(const struct rdb_broker *b, uid_t uid)
{
    const struct record *r;
    unsigned n = 0;
    TAILQ_FOREACH(r, &b->records, link)
    n += r->uid == uid;
    return n;
}

/* The record's advertised string: a foreign server's carries the item Foreign, which tells
 * every client (and every listing, and DNS-SD) to reach it without rdq's session layer. */
static int take_advert(struct rdb_entry *e, const char *advert, bool foreign)
{
    bool marked = rdt_string_foreign(advert);
    e->foreign = foreign || marked;
    int n = snprintf(e->advert, sizeof(e->advert), "%s%s", advert,
                     foreign && !marked ? ",Foreign" : "");
    return n >= 0 && (size_t)n < sizeof(e->advert) ? 0 : -ENOSPC;
}

/* Why a record's advertised string is none a client could dial (NULL: it is one). */
static const char *advert_unusable(const char *advert, char *why, size_t len)
{
    char err[RDT_ERR_MAX], echo[RDT_ECHO_LEN];
    struct rdt_tstring ts;
    if (rdt_parse_advert(advert, &ts, err, sizeof(err)) == 0)
        return NULL;
    snprintf(why, len, "register: the advert %s is no string a client could dial: %s",
             rdt_echo(advert, echo), err);
    return why;
}

static void on_register(struct bconn *c, json_t *body)
{
    struct rdb_broker *b = c->b;
    const char *kind = NULL, *advert = NULL, *desc = "";
    int hidden = 0, clicon = 0, foreign = 0;
    struct rdb_entry e = {0};
    if (!c->local)
        return conn_refuse(c, "register: only on the broker's local socket");
    if (json_unpack(body, "{s:s, s:s, s?b, s?b, s?b, s?s}", "kind", &kind, "advert", &advert,
                    "hidden", &hidden, "clicon", &clicon, "foreign", &foreign, "desc",
                    &desc) != 0 ||
        rdb_kind_parse(kind, &e.kind) != 0)
        return conn_refuse(c, "register: expected {kind: debugger|process|kd, advert: string, "
                              "hidden, clicon, foreign, desc}");
    if (!rdb_printable(advert) || !strchr(advert, ':') || take_advert(&e, advert, foreign) != 0 ||
        strlen(desc) > RDB_DESC_MAX || !rdb_printable(desc))
        return conn_refuse(c, "register: advert or desc too long or not printable");
    char why[RDT_ERR_MAX + 128];
    if (advert_unusable(e.advert, why, sizeof(why)))
        return conn_refuse(c, why);
    if (c->nrecords >= RECORDS_PER_CONN || b->nrecords >= RDB_RECORDS_MAX ||
        (c->cred.uid != 0 && uid_records(b, c->cred.uid) >= RECORDS_PER_UID))
        return conn_refuse(c, "register: too many records");
    struct record *r = calloc(1, sizeof(*r));
    if (!r)
        return conn_refuse(c, "register: out of memory");
    snprintf(e.desc, sizeof(e.desc), "%s", desc);
    e.hidden = hidden;
    e.clicon = clicon;
    *r = (struct record){.id = ++b->next_id,
                         .e = e,
                         .pid = c->cred.pid,
                         .uid = c->cred.uid,
                         .privileged = c->privileged,
                         .owner = c};
    TAILQ_INSERT_TAIL(&b->records, r, link);
    lists_forget(b);
    b->nrecords++;
    c->nrecords++;
    logf_(b, LOG_INFO, "registered: %s - %s (pid %d, uid %u%s%s%s)", rdb_kind_title(e.kind),
          e.advert, (int)r->pid, (unsigned)r->uid, r->privileged ? "" : ", not discoverable",
          e.hidden   ? ", hidden"
          : e.clicon ? ", clicon"
                     : "",
          e.foreign ? ", foreign" : "");
    conn_send(c, RDB_REGISTERED, json_pack("{s:i}", "id", (json_int_t)r->id));
}

static void on_unregister(struct bconn *c, json_t *body)
{
    json_int_t id = 0;
    if (json_unpack(body, "{s:I}", "id", &id) != 0)
        return conn_refuse(c, "unregister: expected {id: number}");
    struct record *r;
    TAILQ_FOREACH(r, &c->b->records, link)
    if (r->owner == c && r->id == (unsigned)id) {
        record_drop(c->b, r);
        return;
    }
}

/* The length of s in JSON: records hold printable ASCII, of which only " and \ are escaped. */
static size_t json_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '"' || *s == '\\' ? 2 : 1;
    return n;
}

/* A row's room in a LIST: {"kind":"...","advert":"...","desc":"..."} and a comma, at most. */
static size_t row_room(const struct record *r)
{
    return 48 + json_len(r->e.advert) + json_len(r->e.desc);
}

/* The LIST of what `asker` may see through filter f (asker NULL: the discoverable records).
 * Rows past the frame's room are left out, and their count is said. */
static uint8_t *list_encode(struct rdb_broker *b, const struct bconn *asker, enum rdb_filter f,
                            size_t *len)
{
    json_t *rows = json_array();
    size_t room = 0, omitted = 0;
    const struct record *r;
    TAILQ_FOREACH(r, &b->records, link)
    {
        if (!listable(r, asker) || !rdb_filter_match(f, r->e.kind))
            continue;
        if ((room += row_room(r)) > LIST_ROOM) {
            omitted++;
            continue;
        }
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "kind", rdb_kind_name(r->e.kind),
                                              "advert", r->e.advert, "desc", r->e.desc));
    }
    json_t *body = json_pack("{s:o}", "rows", rows);
    if (omitted)
        json_object_set_new(body, "omitted", json_integer((json_int_t)omitted));
    uint8_t *frame = rdb_frame_encode(RDB_LIST, body, len);
    json_decref(body);
    return frame;
}

/* Whether `asker` sees more than the discoverable records: its own, not discoverable ones. */
static bool sees_own(const struct rdb_broker *b, const struct bconn *asker)
{
    const struct record *r;
    if (!asker->local)
        return false;
    TAILQ_FOREACH(r, &b->records, link)
    if (!r->privileged && listable(r, asker))
        return true;
    return false;
}

static void on_query(struct bconn *c, json_t *body)
{
    struct rdb_broker *b = c->b;
    const char *fname = "all";
    enum rdb_filter f;
    if (json_unpack(body, "{s?s}", "filter", &fname) != 0 || rdb_filter_parse(fname, &f) != 0)
        return conn_refuse(c, "query: filter is all, debugger or remote");
    if (sees_own(b, c)) { /* a listing of its own */
        size_t len = 0;
        uint8_t *frame = list_encode(b, c, f, &len);
        conn_send_frame(c, frame, len);
        free(frame);
        return;
    }
    if (!b->lists[f].frame)
        b->lists[f].frame = list_encode(b, NULL, f, &b->lists[f].len);
    conn_send_frame(c, b->lists[f].frame, b->lists[f].len);
}

/* ---- Relaying to local pipes ---- */

static void relay_free(struct relay *r)
{
    LIST_REMOVE(r, link);
    r->b->nrelays--;
    rdt_splice_free(r->sp);
    free(r);
}

static void relay_cb(struct rdt_splice *sp, enum rdt_splice_event ev, void *arg)
{
    (void)sp;
    if (ev == RDT_SPLICE_DONE)
        relay_free(arg);
}

/* Connects to the local pipe `name`: the descriptor, or -1 with the reason in `why`. */
static int pipe_connect(struct rdb_broker *b, const char *name, char *why, size_t len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!name[0] || strchr(name, '/') || !rdb_printable(name) ||
        (size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", b->pipe_dir, name) >=
            sizeof(sa.sun_path)) {
        snprintf(why, len, "relay: \"%.60s\" is not a pipe name", name);
        return -1;
    }
    /* non-blocking: a pipe whose server does not accept is busy, and the loop goes on */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (errno == EACCES || errno == EPERM)
            snprintf(why, len,
                     "relay: the broker (uid %u) may not open pipe %s in %s (%s): a pipe to "
                     "relay must be where the broker's user may reach it, such as root's pipe "
                     "directory /run/rdq/pipe",
                     (unsigned)geteuid(), name, b->pipe_dir, strerror(errno));
        else
            snprintf(why, len, "relay: %s on pipe %s (%s)",
                     errno == EAGAIN ? "the server is busy" : "no server", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Joins this connection to a local pipe's socket: after RELAYED, the bytes are the pipe's. */
static void on_relay(struct bconn *c, json_t *body)
{
    struct rdb_broker *b = c->b;
    const char *name = "";
    char why[RDT_ERR_MAX];
    if (!b->cfg.relay)
        return conn_refuse(c, "relay: this broker does not relay to pipes (rdbroker -relay)");
    if (json_unpack(body, "{s:s}", "pipe", &name) != 0)
        return conn_refuse(c, "relay: expected {pipe: name}");
    struct relay *r = b->nrelays < RELAYS_MAX ? calloc(1, sizeof(*r)) : NULL;
    if (!r)
        return conn_refuse(c, "relay: too many relays");
    int fd = pipe_connect(b, name, why, sizeof(why));
    int dup_fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    const char *fail = fd < 0 ? why : dup_fd < 0 ? "relay: out of descriptors" : NULL;
    /* the bytes that came after RELAY, then RELAYED, go now, without waiting on the loop: both
     * are small and the sockets fresh, and a peer that cannot take them is refused */
    static const uint8_t relayed[] = {'R', 'B', RDB_VERSION, RDB_RELAYED, 0, 0, 0, 2, '{', '}'};
    if (!fail && c->out_len)
        fail = "relay: the client does not read";
    if (!fail && c->rd.len && write(fd, c->rd.buf, c->rd.len) != (ssize_t)c->rd.len)
        fail = "relay: the pipe's server did not take the bytes";
    size_t n = 0;
    bool cut = !fail &&
               (rdt_conn_write(c->conn, relayed, sizeof(relayed), &n) != 0 || n != sizeof(relayed));
    if (fail || cut) {
        if (fd >= 0)
            close(fd);
        if (dup_fd >= 0)
            close(dup_fd);
        free(r);
        if (!cut)
            return conn_refuse(c, fail);
        /* part of RELAYED may be out: nothing more can be said on this stream */
        logf_(b, LOG_NOTICE, "%s: relay: the client does not read", c->peer);
        c->closing = true;
        c->out_len = 0;
        return;
    }
    /* a relay lasts as long as its debugging session, idle or not; keepalives find a client
     * host that went away without a word (tcp only; a pipe endpoint ignores them) */
    int on = 1, idle = 60, intvl = 10, cnt = 6;
    setsockopt(c->conn->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(c->conn->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(c->conn->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(c->conn->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    logf_(b, LOG_INFO, "%s: relayed to pipe %s", c->peer, name);
    event_del(c->ev);
    r->b = b;
    LIST_INSERT_HEAD(&b->relays, r, link);
    b->nrelays++;
    rdt_splice_open(&r->sp, b->base, c->conn, dup_fd, fd, relay_cb, r);
    c->conn = NULL;
    c->relayed = c->closing = true;
}

static void dispatch(struct bconn *c, enum rdb_type type, json_t *body)
{
    switch (type) {
    case RDB_REGISTER:
        on_register(c, body);
        break;
    case RDB_UNREGISTER:
        on_unregister(c, body);
        break;
    case RDB_QUERY:
        on_query(c, body);
        break;
    case RDB_RELAY:
        on_relay(c, body);
        break;
    default:
        conn_refuse(c, "unexpected message: a broker takes register, unregister, query and "
                       "relay");
    }
}

static void conn_read(struct bconn *c)
{
    uint8_t buf[16384];
    for (int i = 0; i < 16 && !c->closing; i++) {
        size_t n = 0;
        int rc = rdt_conn_read(c->conn, buf, sizeof(buf), &n);
        if (rc == -EAGAIN)
            break;
        if (rc || n == 0 || rdb_reader_feed(&c->rd, buf, n) != 0) {
            c->closing = true;
            c->out_len = 0; /* the peer is gone: nothing to flush */
            return;
        }
        enum rdb_type type;
        json_t *body;
        char err[256];
        while (!c->closing && (rc = rdb_reader_next(&c->rd, &type, &body, err, sizeof(err))) > 0) {
            dispatch(c, type, body);
            json_decref(body);
        }
        if (rc < 0)
            conn_refuse(c, err);
        if (n < sizeof(buf) && !rdt_conn_pending(c->conn))
            break; /* drained, most likely: the event says when more comes */
    }
    if (!c->closing && rdt_conn_pending(c->conn))
        event_active(c->ev, EV_READ, 0); /* records held past the 16 reads: the next turn */
}

static void conn_event(struct bconn *c, short what)
{
    if (what & EV_TIMEOUT) {
        logf_(c->b, LOG_NOTICE, "%s: closed: %s", c->peer,
              c->out_len ? "it does not read its answers" : "idle");
        conn_free(c);
        return;
    }
    if (what & EV_READ)
        conn_read(c);
    if (c->relayed) {
        conn_free(c);
        return;
    }
    if (conn_flush(c) != 0 || (c->closing && c->out_len == 0))
        conn_free(c);
}

/* Members of the configured group: the peer's groups as they were when it connected, from the
 * kernel (SO_PEERGROUPS), never from a file a later process could stand behind. */
static bool in_group(const struct rdb_broker *b, int fd, const struct ucred *cr)
{
    if (!b->cfg.have_group)
        return false;
    if (cr->gid == b->cfg.group)
        return true;
    gid_t groups[256];
    socklen_t len = sizeof(groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
        return false; /* more than 256 groups, or an old kernel: the primary group only */
    for (size_t i = 0; i < len / sizeof(gid_t); i++)
        if (groups[i] == b->cfg.group)
            return true;
    return false;
}

/* Connections of one peer already served: an address, or a local user but root. */
static unsigned peer_conns(const struct rdb_broker *b, const char *peer)
{
    const struct bconn *c;
    unsigned n = 0;
    LIST_FOREACH(c, &b->conns, link)
    n += strcmp(c->peer, peer) == 0;
    return n;
}

/* Why a connection that passed the session layer is turned away (NULL: it is served). Root's on
 * the local socket never are. */
static const char *busy_reason(struct rdb_broker *b, bool local, const struct ucred *cr,
                               const char *peer)
{
    if (local && cr->uid == 0)
        return NULL;
    if (local ? b->nconns_reg >= REG_CONNS_MAX : b->nconns - b->nconns_reg >= CONNS_MAX)
        return "busy: too many connections, try again shortly";
    if (peer_conns(b, peer) >= PEER_CONNS_MAX)
        return local ? "busy: too many connections from your user"
                     : "busy: too many connections from your address";
    return NULL;
}

/* Tells the peer why in an error message, then closes. */
static void turn_away(struct rdb_broker *b, struct rdt_conn *conn, const char *peer,
                      const char *why)
{
    size_t len = 0;
    json_t *body = json_pack("{s:s}", "message", why);
    uint8_t *frame = rdb_frame_encode(RDB_ERROR, body, &len);
    json_decref(body);
    rdt_conn_close_with(conn, frame, frame ? len : 0);
    free(frame);
    logf_(b, LOG_WARNING, "%s: turned away: %s", peer, why);
}

static void on_client(struct rdt_server *srv, struct rdt_conn *conn, const char *peer,
                      const char *err, void *arg)
{
    struct rdb_broker *b = arg;
    if (!conn) {
        logf_(b, LOG_NOTICE, "%s", err);
        return;
    }
    struct ucred cred = {0};
    bool local = srv == b->reg && rdt_conn_peer_cred(conn, &cred) == 0;
    const char *busy = busy_reason(b, local, &cred, peer);
    if (busy) {
        turn_away(b, conn, peer, busy);
        return;
    }
    struct bconn *c = calloc(1, sizeof(*c));
    if (c)
        c->ev = event_new(b->base, -1, 0, conn_cb, c);
    if (!c || !c->ev) {
        free(c);
        rdt_conn_free(conn);
        return;
    }
    c->b = b;
    c->conn = conn;
    c->ev_want = -1;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->local = local;
    c->cred = cred;
    c->privileged = c->local && (c->cred.uid == 0 || in_group(b, conn->fd, &c->cred));
    rdb_reader_init(&c->rd);
    LIST_INSERT_HEAD(&b->conns, c, link);
    b->nconns++;
    b->nconns_reg += c->local;
    conn_event(c, EV_READ); /* a query may have come with the handshake */
}

/* ---- Life cycle ---- */

static int open_reg(struct rdb_broker *b, char *err, size_t errlen)
{
    struct rdt_tstring ts = {.proto = RDT_NPIPE, .side = RDT_SERVER};
    if (strlen(b->cfg.sock_path) >= sizeof(ts.pipe) || b->cfg.sock_path[0] != '/')
        return snprintf(err, errlen, "socket %s: an absolute path of at most 100 characters",
                        b->cfg.sock_path),
               -EINVAL;
    snprintf(ts.pipe, sizeof(ts.pipe), "%s", b->cfg.sock_path);
    /* every user may register (the socket is 0666); privilege comes from the credentials, and
     * every user connects as itself: no one's handshakes hold up another's */
    int rc = rdt_server_open(&b->reg, b->base, &ts, on_client, b, err, errlen);
    if (rc == 0)
        rdt_server_cap_users(b->reg);
    return rc;
}

static int open_query(struct rdb_broker *b, const char *t, char *err, size_t errlen)
{
    struct rdt_tstring ts;
    char why[RDT_ERR_MAX];
    int rc = rdt_parse(t, RDT_SERVER, &ts, why, sizeof(why));
    if (rc == 0 && (ts.clicon[0] || ts.proto == RDT_COM))
        rc = -EINVAL,
        snprintf(why, sizeof(why),
                 "a query endpoint is tcp:port=N, npipe:pipe=N, ssl:... or spipe:..., "
                 "and never clicon");
    if (rc == 0)
        rc = rdt_server_open(&b->query[b->nquery], b->base, &ts, on_client, b, why, sizeof(why));
    if (rc) {
        char shown[RDT_ECHO_LEN];
        snprintf(err, errlen, "-listen %s: %s", rdt_echo(t, shown), why);
        return rc;
    }
    b->nquery++;
    return 0;
}

int rdb_broker_open(struct rdb_broker **out, struct event_base *base, const struct rdb_config *cfg,
                    char *err, size_t errlen)
{
    *out = NULL;
    struct rdb_broker *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->base = base;
    b->cfg = *cfg;
    if (b->cfg.idle_ms <= 0)
        b->cfg.idle_ms = RDB_IDLE_MS;
    LIST_INIT(&b->conns);
    LIST_INIT(&b->relays);
    TAILQ_INIT(&b->records);
    rdt_pipe_dir(b->pipe_dir, sizeof(b->pipe_dir)); /* now: before privileges are dropped */
    if (!b->cfg.sock_path)
        b->cfg.sock_path = rdb_sock_path();
    int rc = open_reg(b, err, errlen);
    for (int i = 0; rc == 0 && i < cfg->nlisten && i < 8; i++)
        rc = open_query(b, cfg->listen[i], err, errlen);
    if (rc == 0 && cfg->dns_server)
        rc = rdb_dnsup_open(&b->dns, base, &b->cfg, b, err, errlen);
    if (rc == 0 && !cfg->no_dnssd && (rc = rdb_dnssd_open(&b->dnssd, b, base, &b->cfg)) != 0)
        snprintf(err, errlen, "DNS-SD: %s", strerror(-rc));
    if (rc) {
        rdb_dnsup_withdraw(b->dns, 2000); /* its first update may be out already */
        rdb_broker_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

void rdb_broker_free(struct rdb_broker *b)
{
    if (!b)
        return;
    rdb_dnsup_free(b->dns);
    rdb_dnssd_free(b->dnssd);
    b->dnssd = NULL;
    while (!LIST_EMPTY(&b->conns))
        conn_free(LIST_FIRST(&b->conns));
    while (!LIST_EMPTY(&b->relays))
        relay_free(LIST_FIRST(&b->relays));
    lists_forget(b);
    rdt_server_free(b->reg);
    for (int i = 0; i < b->nquery; i++)
        rdt_server_free(b->query[i]);
    free(b);
}

int rdb_broker_endpoints(const struct rdb_broker *b, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < b->nquery; i++) {
        char one[RDT_STRING_MAX];
        if (rdt_server_advert(b->query[i], one, sizeof(one)) < 0)
            continue;
        int n = snprintf(buf + off, len - off, "%s%s", off ? " " : "", one);
        if (n < 0 || (size_t)n >= len - off)
            return -ENOSPC;
        off += (size_t)n;
    }
    return (int)off;
}

unsigned rdb_broker_records(const struct rdb_broker *b)
{
    return b->nrecords;
}

int rdb_broker_withdraw(struct rdb_broker *b, int timeout_ms)
{
    return b ? rdb_dnsup_withdraw(b->dns, timeout_ms) : 0;
}

/* The first query endpoint that anyone may ask: tcp, no password. */
static int public_port(const struct rdb_broker *b)
{
    for (int i = 0; i < b->nquery; i++) {
        struct rdt_tstring ts;
        char why[RDT_ERR_MAX];
        if (rdt_parse(b->cfg.listen[i], RDT_SERVER, &ts, why, sizeof(why)) == 0 &&
            ts.proto == RDT_TCP && !ts.password[0])
            return rdt_server_bound(b->query[i])->port;
    }
    return -ENOENT;
}

int rdb_broker_service(const struct rdb_broker *b, struct rdb_service_info *out)
{
    memset(out, 0, sizeof(*out));
    gethostname(out->host, sizeof(out->host) - 1);
    snprintf(out->instance, sizeof(out->instance), "rdq broker on %.40s", out->host);
    snprintf(out->txt[out->ntxt++], sizeof(out->txt[0]), "v=%d", RDB_VERSION);
    snprintf(out->txt[out->ntxt++], sizeof(out->txt[0]), "host=%.250s", out->host);
    char eps[2048];
    if (rdb_broker_endpoints(b, eps, sizeof(eps)) < 0)
        eps[0] = '\0';
    snprintf(out->txt[out->ntxt++], sizeof(out->txt[0]), "query=%.249s", eps);
    int port = public_port(b);
    if (port < 0)
        return port;
    out->port = (uint16_t)port;
    return 0;
}
