/* rdbroker's core: registrations that live exactly as long as their connection, and queries
 * answered from them, on one event loop. */
#include "broker.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
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

#define CONNS_MAX 4096      /* connections served at once */
#define RECORDS_PER_CONN 64 /* records one registration connection may hold */
#define OUT_MAX (4 * RDB_FRAME_MAX)

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
    bool relayed; /* handed to a relay: the connection is no longer this one's */
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
    LIST_HEAD(, bconn) conns;
    unsigned nconns;
    TAILQ_HEAD(, record) records; /* in the order of registration, as listings show them */
    unsigned nrecords;
    unsigned next_id;
};

static void logf_(struct rdb_broker *b, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(struct rdb_broker *b, int prio, const char *fmt, ...)
{
    if (!b->cfg.log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->cfg.log(prio, msg, b->cfg.log_arg);
}

/* ---- Records ---- */

static void record_drop(struct rdb_broker *b, struct record *r)
{
    TAILQ_REMOVE(&b->records, r, link);
    b->nrecords--;
    r->owner->nrecords--;
    logf_(b, LOG_INFO, "gone: %s - %s (pid %d)", rdb_kind_title(r->e.kind), r->e.advert,
          (int)r->pid);
    free(r);
}

static bool listable(const struct record *r, const struct bconn *asker)
{
    if (r->e.hidden || r->e.clicon)
        return false;
    return r->privileged || (asker->local && asker->cred.uid == r->uid);
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
    short want = EV_READ | EV_PERSIST | (c->out_len ? EV_WRITE : 0);
    if (event_get_events(c->ev) != want) {
        event_del(c->ev);
        event_assign(c->ev, c->b->base, c->conn->fd, want, conn_cb, c);
        event_add(c->ev, NULL);
    }
    return 0;
}

static void conn_send(struct bconn *c, enum rdb_type type, json_t *body)
{
    size_t len;
    uint8_t *frame = rdb_frame_encode(type, body, &len);
    json_decref(body);
    if (!frame || c->out_len + len > OUT_MAX) {
        free(frame);
        c->closing = true; /* a client that does not read its answers is dropped */
        return;
    }
    uint8_t *nb = realloc(c->out, c->out_len + len);
    if (nb) {
        memcpy(nb + c->out_len, frame, len);
        c->out = nb;
        c->out_len += len;
    }
    free(frame);
    if (!nb)
        c->closing = true;
}

/* Answers a bad message: says why, and ends this connection once that is written. */
static void conn_refuse(struct bconn *c, const char *why)
{
    logf_(c->b, LOG_NOTICE, "%s: %s", c->peer, why);
    conn_send(c, RDB_ERROR, json_pack("{s:s}", "message", why));
    c->closing = true;
}

/* ---- Messages ---- */

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static void on_register(struct bconn *c, json_t *body)
{
    struct rdb_broker *b = c->b;
    const char *kind = NULL, *advert = NULL, *desc = "";
    int hidden = 0, clicon = 0;
    struct rdb_entry e = {0};
    if (!c->local)
        return conn_refuse(c, "register: only on the broker's local socket");
    if (json_unpack(body, "{s:s, s:s, s?b, s?b, s?s}", "kind", &kind, "advert", &advert, "hidden",
                    &hidden, "clicon", &clicon, "desc", &desc) != 0 ||
        rdb_kind_parse(kind, &e.kind) != 0)
        return conn_refuse(c, "register: expected {kind: debugger|process|kd, advert: string, "
                              "hidden, clicon, desc}");
    if (strlen(advert) >= sizeof(e.advert) || !printable(advert) || !strchr(advert, ':') ||
        strlen(desc) > RDB_DESC_MAX || !printable(desc))
        return conn_refuse(c, "register: advert or desc too long or not printable");
    if (c->nrecords >= RECORDS_PER_CONN || b->nrecords >= RDB_RECORDS_MAX)
        return conn_refuse(c, "register: too many records");
    struct record *r = calloc(1, sizeof(*r));
    if (!r)
        return conn_refuse(c, "register: out of memory");
    snprintf(e.advert, sizeof(e.advert), "%s", advert);
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
    b->nrecords++;
    c->nrecords++;
    logf_(b, LOG_INFO, "registered: %s - %s (pid %d, uid %u%s%s)", rdb_kind_title(e.kind), e.advert,
          (int)r->pid, (unsigned)r->uid, r->privileged ? "" : ", not discoverable",
          e.hidden   ? ", hidden"
          : e.clicon ? ", clicon"
                     : "");
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

static void on_query(struct bconn *c, json_t *body)
{
    const char *fname = "all";
    enum rdb_filter f;
    if (json_unpack(body, "{s?s}", "filter", &fname) != 0 || rdb_filter_parse(fname, &f) != 0)
        return conn_refuse(c, "query: filter is all, debugger or remote");
    json_t *rows = json_array();
    const struct record *r;
    TAILQ_FOREACH(r, &c->b->records, link)
    {
        if (!listable(r, c) || !rdb_filter_match(f, r->e.kind))
            continue;
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s}", "kind", rdb_kind_name(r->e.kind),
                                              "advert", r->e.advert, "desc", r->e.desc));
    }
    conn_send(c, RDB_LIST, json_pack("{s:o}", "rows", rows));
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
    if (!name[0] || strchr(name, '/') || !printable(name) ||
        (size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", b->pipe_dir, name) >=
            sizeof(sa.sun_path)) {
        snprintf(why, len, "relay: \"%.60s\" is not a pipe name", name);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(why, len, "relay: no server on pipe %s (%s)", name, strerror(errno));
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
    json_t *ok = json_object();
    int dup_fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (fd < 0 || dup_fd < 0 || rdb_send(c->conn, RDB_RELAYED, ok, 1000) != 0 ||
        (c->rd.len && write(fd, c->rd.buf, c->rd.len) != (ssize_t)c->rd.len)) {
        json_decref(ok);
        if (fd >= 0)
            close(fd);
        if (dup_fd >= 0)
            close(dup_fd);
        free(r);
        return conn_refuse(c, fd < 0 ? why : "relay: the pipe's server did not take the bytes");
    }
    json_decref(ok);
    fcntl(fd, F_SETFL, O_NONBLOCK);
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
    }
}

static void conn_event(struct bconn *c, short what)
{
    if (what & EV_READ)
        conn_read(c);
    if (c->relayed) {
        conn_free(c);
        return;
    }
    if (conn_flush(c) != 0 || (c->closing && c->out_len == 0))
        conn_free(c);
}

/* Members of the configured group: the process's own groups, from /proc. */
static bool in_group(const struct rdb_broker *b, const struct ucred *cr)
{
    if (!b->cfg.have_group)
        return false;
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)cr->pid);
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Groups:", 7) != 0)
            continue;
        for (char *t = strtok(line + 7, " \t\n"); t && !found; t = strtok(NULL, " \t\n"))
            found = (gid_t)strtoul(t, NULL, 10) == b->cfg.group;
    }
    if (f)
        fclose(f);
    return found || cr->gid == b->cfg.group;
}

static void on_client(struct rdt_server *srv, struct rdt_conn *conn, const char *peer,
                      const char *err, void *arg)
{
    struct rdb_broker *b = arg;
    if (!conn) {
        logf_(b, LOG_NOTICE, "%s", err);
        return;
    }
    struct bconn *c = b->nconns < CONNS_MAX ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        logf_(b, LOG_WARNING, "%s: turned away: %u connections already", peer, b->nconns);
        rdt_conn_free(conn);
        return;
    }
    c->b = b;
    c->conn = conn;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    socklen_t cl = sizeof(c->cred);
    c->local = srv == b->reg && getsockopt(conn->fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &cl) == 0;
    c->privileged = c->local && (c->cred.uid == 0 || in_group(b, &c->cred));
    rdb_reader_init(&c->rd);
    c->ev = event_new(b->base, conn->fd, EV_READ | EV_PERSIST, conn_cb, c);
    LIST_INSERT_HEAD(&b->conns, c, link);
    b->nconns++;
    event_add(c->ev, NULL);
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
    int rc = rdt_server_open(&b->reg, b->base, &ts, on_client, b, err, errlen);
    if (rc == 0)
        chmod(b->cfg.sock_path, 0666); /* every user may register; privilege comes from creds */
    return rc;
}

static int open_query(struct rdb_broker *b, const char *t, char *err, size_t errlen)
{
    struct rdt_tstring ts;
    char why[RDT_ERR_MAX];
    int rc = rdt_parse(t, RDT_SERVER, &ts, why, sizeof(why));
    if (rc == 0 && (ts.clicon[0] || (ts.proto != RDT_TCP && ts.proto != RDT_NPIPE)))
        rc = -EINVAL, snprintf(why, sizeof(why), "a query endpoint is tcp:port=N or npipe:pipe=N");
    if (rc == 0)
        rc = rdt_server_open(&b->query[b->nquery], b->base, &ts, on_client, b, why, sizeof(why));
    if (rc) {
        snprintf(err, errlen, "-listen %s: %s", t, why);
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
    LIST_INIT(&b->conns);
    LIST_INIT(&b->relays);
    TAILQ_INIT(&b->records);
    rdt_pipe_dir(b->pipe_dir, sizeof(b->pipe_dir)); /* now: before privileges are dropped */
    if (!b->cfg.sock_path)
        b->cfg.sock_path = rdb_sock_path();
    int rc = open_reg(b, err, errlen);
    for (int i = 0; rc == 0 && i < cfg->nlisten && i < 8; i++)
        rc = open_query(b, cfg->listen[i], err, errlen);
    if (rc) {
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
    while (!LIST_EMPTY(&b->conns))
        conn_free(LIST_FIRST(&b->conns));
    while (!LIST_EMPTY(&b->relays))
        relay_free(LIST_FIRST(&b->relays));
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
