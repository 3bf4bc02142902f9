/* Servers on the event loop: accept (or, for clicon, dial) clients, run the session layer for
 * each without blocking, hand ready connections to the owner, and slow down peers that gave
 * wrong passwords. */
#include "internal.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#define HANDSHAKE_MS 10000  /* a client has this long to complete the session layer */
#define PENDING_MAX 1024    /* handshakes in progress at once, root's apart; more are turned */
#define PEER_PENDING_MAX 64 /* away, and so are more of one peer (an address, or a user) */
#define NET_PENDING_MAX 256 /* or of one IPv6 /64 */
#define TURNED_AWAY_MS 1000 /* turn-aways are logged at most this often */
#define PENALTY_SLOTS 64    /* peers remembered for refused passwords */
#define PENALTY_BASE_MS 250 /* the first retry after a refusal waits this long ... */
#define PENALTY_MAX_MS 8000 /* ... doubling up to this */
#define PENALTY_FORGET_MS 60000
#define REDIAL_MIN_MS 100
#define REDIAL_MAX_MS 2000 /* well within a waiting client's time */
#define ACCEPT_PAUSE_MS 100

struct penalty {
    char peer[64];
    unsigned fails;
    int64_t last;
};

struct pending {
    struct rdt_server *srv;
    struct rdt_conn *conn;
    struct event *ev;
    int64_t deadline;
    bool held;   /* waiting out the peer's hold-back */
    bool capped; /* counted against the caps: every peer but root on the local socket */
    char peer[64];
    char key[64]; /* what its penalties and caps go by besides the peer: see peer_key */
    LIST_ENTRY(pending) link;
};

struct rdt_server {
    struct event_base *base;
    struct rdt_tstring ts;
    struct rdt_bound bound;
    struct event *accept_ev;
    struct event *resume_ev; /* accepting again after running out of descriptors */
    struct event *redial_ev; /* clicon */
    unsigned redial_ms;
    struct rdt_resolver *res; /* clicon: the client's name, on the server's loop */
    struct rdt_lookup *lookup;
    struct rdt_tls *tls; /* ssl, spipe: the server's context, its certificate loaded */
    rdt_server_cb cb;
    void *arg;
    LIST_HEAD(, pending) pending;
    unsigned npending;    /* of them, those counted against the caps */
    bool cap_users;       /* a pipe's handshakes are capped per user too */
    unsigned turned_away; /* since the last report of it */
    int64_t turned_away_at;
    struct penalty penalties[PENALTY_SLOTS];
};

static void report(struct rdt_server *srv, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct rdt_server *srv, const char *peer, const char *fmt, ...)
{
    char msg[RDT_ERR_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    srv->cb(srv, NULL, peer, msg, srv->arg);
}

/* What a peer's penalties go by, and its handshakes are counted by besides itself: its /64 for
 * an IPv6 address (one host may hold the whole of it), else the peer itself. */
static void peer_key(const char *peer, char key[64])
{
    if (!rdt_peer_net(peer, key, 64))
        snprintf(key, 64, "%s", peer);
}

/* ---- Penalties for refused passwords ---- */

static struct penalty *penalty_find(const struct rdt_server *srv, const char *peer, bool create)
{
    struct rdt_server *s = (struct rdt_server *)srv;
    char key[64];
    peer_key(peer, key);
    struct penalty *oldest = &s->penalties[0];
    int64_t now = rdt_now_ms();
    for (struct penalty *p = s->penalties; p < s->penalties + PENALTY_SLOTS; p++) {
        if (p->fails && now - p->last > PENALTY_FORGET_MS)
            p->fails = 0;
        if (p->fails && strcmp(p->peer, key) == 0)
            return p;
        if (p->fails < oldest->fails || (p->fails == oldest->fails && p->last < oldest->last))
            oldest = p;
    }
    if (!create)
        return NULL;
    snprintf(oldest->peer, sizeof(oldest->peer), "%s", key);
    oldest->fails = 0;
    return oldest;
}

unsigned rdt_server_penalty_ms(const struct rdt_server *srv, const char *peer)
{
    const struct penalty *p = penalty_find(srv, peer, false);
    if (!p)
        return 0;
    unsigned shift = p->fails - 1 < 5 ? p->fails - 1 : 5;
    unsigned ms = PENALTY_BASE_MS << shift;
    return ms < PENALTY_MAX_MS ? ms : PENALTY_MAX_MS;
}

static void penalty_note(struct rdt_server *srv, const char *peer, bool refused)
{
    struct penalty *p = penalty_find(srv, peer, refused);
    if (!p)
        return;
    p->fails = refused ? p->fails + 1 : 0;
    p->last = rdt_now_ms();
}

/* ---- Handshakes in progress ---- */

static void pending_free(struct pending *p, bool close_conn)
{
    struct rdt_server *srv = p->srv;
    LIST_REMOVE(p, link);
    srv->npending -= p->capped;
    if (p->ev)
        event_free(p->ev);
    if (close_conn)
        rdt_conn_free(p->conn);
    free(p);
}

static void schedule_redial(struct rdt_server *srv);
static void pending_cb(evutil_socket_t fd, short what, void *arg);

static void pending_done(struct pending *p, int rc)
{
    struct rdt_server *srv = p->srv;
    bool clicon = srv->ts.clicon[0] != '\0';
    if (rc == 0) {
        penalty_note(srv, p->peer, false);
        srv->redial_ms = REDIAL_MIN_MS;
        struct rdt_conn *c = p->conn;
        char peer[sizeof(p->peer)];
        snprintf(peer, sizeof(peer), "%s", p->peer);
        pending_free(p, false);
        srv->cb(srv, c, peer, NULL, srv->arg);
        return;
    }
    if (rdt_auth_refused(p->conn))
        penalty_note(srv, p->peer, true);
    if (!clicon || rc != -ECONNREFUSED)
        report(srv, p->peer, "%s: %s", p->peer,
               rc == -ETIMEDOUT ? "the handshake timed out" : rdt_conn_error(p->conn));
    pending_free(p, true);
    if (clicon)
        schedule_redial(srv);
}

/* Runs the session layer as far as it goes, then waits for what it needs. */
static void pending_step(struct pending *p)
{
    p->held = false;
    int rc = rdt_conn_open_step(p->conn);
    if (rc != -EAGAIN) {
        pending_done(p, rc);
        return;
    }
    int64_t left = p->deadline - rdt_now_ms();
    if (left <= 0) {
        pending_done(p, -ETIMEDOUT);
        return;
    }
    short ev = rdt_conn_events(p->conn) & POLLOUT ? EV_WRITE : EV_READ;
    struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
    if (event_get_fd(p->ev) != p->conn->fd || event_get_events(p->ev) != ev) {
        event_del(p->ev);
        event_assign(p->ev, p->srv->base, p->conn->fd, ev, pending_cb, p);
    }
    if (event_add(p->ev, &tv) < 0)
        pending_done(p, -ENOMEM);
}

static void pending_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    if ((what & EV_TIMEOUT) && fd >= 0)
        pending_done(p, -ETIMEDOUT);
    else
        pending_step(p); /* a penalty's wait is over, or the socket is ready */
}

/* Whether an attempt of `peer` (or of its /64) waits out its hold-back. */
static bool peer_held(const struct rdt_server *srv, const char *peer)
{
    char key[64];
    peer_key(peer, key);
    const struct pending *p;
    LIST_FOREACH(p, &srv->pending, link)
    if (p->held && strcmp(p->key, key) == 0)
        return true;
    return false;
}

static bool serves_pipes(const struct rdt_server *srv)
{
    return srv->ts.proto == RDT_NPIPE || srv->ts.proto == RDT_SPIPE;
}

bool rdt_server_caps_peers(const struct rdt_server *srv)
{
    return !serves_pipes(srv) || srv->cap_users;
}

/* Why a new connection of `peer` is turned away (NULL: it is not). Root's, on the local socket,
 * never are: nobody can keep root's servers from registering. */
static const char *busy_reason(const struct rdt_server *srv, const char *peer, bool root)
{
    if (root)
        return NULL;
    if (srv->npending >= PENDING_MAX)
        return "busy: too many connections in progress, try again shortly";
    if (serves_pipes(srv) && !srv->cap_users)
        return NULL; /* relayed clients all have the broker's uid: one user is many peers */
    char key[64];
    peer_key(peer, key);
    unsigned n = 0, in_net = 0;
    const struct pending *p;
    LIST_FOREACH(p, &srv->pending, link)
    {
        n += p->capped && strcmp(p->peer, peer) == 0;
        in_net += p->capped && strcmp(p->key, key) == 0;
    }
    if (n >= PEER_PENDING_MAX)
        return serves_pipes(srv) ? "busy: too many connections from your user"
                                 : "busy: too many connections from your address";
    return in_net >= NET_PENDING_MAX ? "busy: too many connections from your network" : NULL;
}

/* Tells the peer why, and logs it (at most once a second, with how many since). */
static void turn_away(struct rdt_server *srv, struct rdt_conn *conn, const char *peer,
                      const char *why)
{
    if (srv->tls)
        rdt_conn_close_with(conn, NULL, 0); /* a busy frame in clear is not TLS: just closed */
    else
        rdt_auth_turn_away(conn, why);
    srv->turned_away++;
    int64_t now = rdt_now_ms();
    if (now - srv->turned_away_at < TURNED_AWAY_MS)
        return;
    report(srv, peer, "%s: turned away (%s); %u turned away since the last report", peer, why,
           srv->turned_away);
    srv->turned_away = 0;
    srv->turned_away_at = now;
}

/* Takes a new connection (accepted or dialed) into the handshake, held back first if the peer
 * was refused a password lately. */
static void pending_add(struct rdt_server *srv, struct rdt_conn *conn, const char *peer,
                        bool dialed, bool capped)
{
    unsigned delay = rdt_server_penalty_ms(srv, peer);
    if (delay && !serves_pipes(srv) && peer_held(srv, peer)) {
        /* a peer that was refused a password has one attempt at a time held back: more
         * connections at once do not make its guesses come faster. Not on pipes: there every
         * client relayed by the broker has the broker's uid, and one host's guesses would
         * turn away all the others */
        rdt_conn_free(conn);
        report(srv, peer,
               "%s: turned away: its last password was refused and an attempt of its waits out "
               "its hold-back",
               peer);
        return;
    }
    struct pending *p = calloc(1, sizeof(*p));
    if (conn && srv->tls) /* the session layer runs inside TLS */
        conn = rdt_tls_conn(conn, srv->tls);
    conn =
        conn ? rdt_auth_conn(conn, RDT_ROLE_SERVER, srv->ts.password, RDT_PROTOCOL_VERSION) : NULL;
    if (!p || !conn) {
        free(p);
        rdt_conn_free(conn);
        report(srv, peer, "%s: out of memory", peer);
        return;
    }
    p->srv = srv;
    p->conn = conn;
    p->capped = capped;
    snprintf(p->peer, sizeof(p->peer), "%s", peer);
    peer_key(peer, p->key);
    LIST_INSERT_HEAD(&srv->pending, p, link);
    srv->npending += capped;
    p->deadline = rdt_now_ms() + delay + HANDSHAKE_MS;
    struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};
    /* one event serves the whole handshake: first the penalty's wait, if any, then the socket */
    p->ev = event_new(srv->base, -1, 0, pending_cb, p);
    p->held = delay > 0;
    /* a dialed (clicon) connection starts from the loop: rdt_server_open, which dials first,
     * returns before any report of it */
    if (!p->ev || ((delay || dialed) && evtimer_add(p->ev, &tv) < 0))
        pending_done(p, -ENOMEM);
    else if (!delay && !dialed)
        pending_step(p);
}

/* ---- Accepting ---- */

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdt_server *srv = arg;
    event_add(srv->accept_ev, NULL);
}

/* Out of descriptors or memory: stop accepting for a moment rather than spin on the listener. */
static void pause_accepting(struct rdt_server *srv, int e)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = ACCEPT_PAUSE_MS * 1000};
    report(srv, "listener", "accept: %s; pausing for %d ms", strerror(e), ACCEPT_PAUSE_MS);
    event_del(srv->accept_ev);
    evtimer_add(srv->resume_ev, &tv);
}

static void com_serve(struct rdt_server *srv);

/* com: each client comes as a socket of its own from the line's owner. */
static void com_accept_cb(evutil_socket_t ctl, short what, void *arg)
{
    (void)what;
    struct rdt_server *srv = arg;
    char peer[64];
    snprintf(peer, sizeof(peer), "com channel %d", srv->ts.channel);
    for (int i = 0; i < 64; i++) {
        int fd, rc = rdt_com_accept(ctl, &fd);
        if (rc == -EAGAIN)
            return;
        if (rc <= 0) { /* the owner has gone: serve again through a new one */
            event_del(srv->accept_ev);
            rdt_unbind(&srv->bound);
            report(srv, peer, "com: the owner of the line %s ended; serving again",
                   srv->ts.com_device);
            schedule_redial(srv);
            return;
        }
        struct rdt_conn *conn = rdt_sock_conn(&rdt_unix_ops, fd);
        const char *busy = conn ? busy_reason(srv, peer, false) : NULL;
        if (busy)
            turn_away(srv, conn, peer, busy);
        else
            pending_add(srv, conn, peer, false, true);
    }
}

static void com_serve(struct rdt_server *srv)
{
    char err[RDT_ERR_MAX];
    int fd = rdt_com_serve(&srv->ts, err, sizeof(err));
    if (fd < 0) {
        report(srv, srv->ts.com_device, "%s", err);
        schedule_redial(srv);
        return;
    }
    srv->bound.fd = fd;
    srv->redial_ms = REDIAL_MIN_MS;
    event_assign(srv->accept_ev, srv->base, fd, EV_READ | EV_PERSIST, com_accept_cb, srv);
    event_add(srv->accept_ev, NULL);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    struct rdt_server *srv = arg;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                pause_accepting(srv, errno);
            return;
        }
        struct rdt_conn *conn = rdt_sock_conn(serves_pipes(srv) ? &rdt_unix_ops : &rdt_tcp_ops, fd);
        char peer[64] = "unknown";
        struct ucred cred;
        bool root = conn && rdt_conn_peer_cred(conn, &cred) == 0 && cred.uid == 0;
        if (conn)
            rdt_conn_peer_name(conn, peer, sizeof(peer));
        const char *busy = conn ? busy_reason(srv, peer, root) : NULL;
        if (busy)
            turn_away(srv, conn, peer, busy);
        else
            pending_add(srv, conn, peer, false, !root);
    }
}

/* ---- Dialing the client (clicon) ---- */

static void dial_resolved(int rc, const struct rdt_addrs *addrs, const char *err, void *arg)
{
    struct rdt_server *srv = arg;
    struct sockaddr_storage sa;
    socklen_t salen;
    srv->lookup = NULL;
    if (rc) {
        report(srv, srv->ts.clicon, "cannot resolve %s", err);
        schedule_redial(srv);
        return;
    }
    int fd = -1;
    rc = rdt_sockaddr_of(addrs->addr[0], srv->ts.port_lo, &sa, &salen);
    if (rc == 0)
        rc = rdt_sock_connect_start((struct sockaddr *)&sa, salen, &fd);
    if (rc && rc != -EINPROGRESS) {
        if (fd >= 0)
            close(fd);
        if (rc != -ECONNREFUSED)
            report(srv, srv->ts.clicon, "%s: %s", srv->ts.clicon, strerror(-rc));
        schedule_redial(srv);
        return;
    }
    char what[RDT_HOST_MAX + 8];
    snprintf(what, sizeof(what), "%s:%u", srv->ts.clicon, srv->ts.port_lo);
    pending_add(srv, rdt_sock_connecting(&rdt_tcp_ops, fd, what), srv->ts.clicon, true, false);
}

/* clicon: the client's name through c-ares on the server's loop, then a connect. */
static void dial_once(struct rdt_server *srv)
{
    char err[RDT_ERR_MAX];
    if (!srv->res && rdt_resolver_new(&srv->res, srv->base, err, sizeof(err)) != 0) {
        report(srv, srv->ts.clicon, "%s", err);
        schedule_redial(srv);
        return;
    }
    srv->lookup = rdt_lookup_addrs(srv->res, srv->ts.clicon, srv->ts.ipv6, dial_resolved, srv);
    if (!srv->lookup)
        schedule_redial(srv);
}

static void redial_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdt_server *srv = arg;
    if (srv->ts.proto == RDT_COM)
        com_serve(srv);
    else
        dial_once(srv);
}

static void schedule_redial(struct rdt_server *srv)
{
    unsigned ms = srv->redial_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    srv->redial_ms = ms * 2 < REDIAL_MAX_MS ? ms * 2 : REDIAL_MAX_MS;
    evtimer_add(srv->redial_ev, &tv);
}

void rdt_server_redial(struct rdt_server *srv)
{
    if (srv->ts.clicon[0] && !evtimer_pending(srv->redial_ev, NULL) && LIST_EMPTY(&srv->pending)) {
        srv->redial_ms = REDIAL_MIN_MS;
        dial_once(srv);
    }
}

/* ---- Life cycle ---- */

int rdt_server_open(struct rdt_server **out, struct event_base *base, const struct rdt_tstring *ts,
                    rdt_server_cb cb, void *arg, char *err, size_t errlen)
{
    *out = NULL;
    if (ts->side == RDT_CLIENT)
        return rdt_errf(-EINVAL, err, errlen, "a server needs a server-side transport string");
    int rc = 0;
    struct rdt_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return rdt_errf(-ENOMEM, err, errlen, "out of memory");
    srv->base = base;
    srv->ts = *ts;
    LIST_INIT(&srv->pending);
    srv->cb = cb;
    srv->arg = arg;
    srv->bound.fd = -1;
    srv->redial_ms = REDIAL_MIN_MS;
    if ((ts->proto == RDT_SSL || ts->proto == RDT_SPIPE) &&
        (rc = rdt_tls_server(&srv->tls, ts, err, errlen))) {
        rdt_server_free(srv);
        return rc;
    }
    if (ts->proto == RDT_COM) {
        srv->redial_ev = evtimer_new(base, redial_cb, srv);
        srv->accept_ev = event_new(base, -1, 0, com_accept_cb, srv);
        if (!srv->redial_ev || !srv->accept_ev)
            rc = rdt_errf(-ENOMEM, err, errlen, "out of memory");
        else if ((srv->bound.fd = rdt_com_serve(ts, err, errlen)) < 0)
            rc = srv->bound.fd;
        if (rc == 0) {
            event_assign(srv->accept_ev, base, srv->bound.fd, EV_READ | EV_PERSIST, com_accept_cb,
                         srv);
            rc = event_add(srv->accept_ev, NULL);
        }
    } else if (ts->clicon[0]) {
        srv->bound.port = ts->port_lo;
        srv->redial_ev = evtimer_new(base, redial_cb, srv);
        rc = srv->redial_ev ? 0 : rdt_errf(-ENOMEM, err, errlen, "out of memory");
    } else if ((rc = rdt_bind(ts, &srv->bound, err, errlen)) == 0) {
        srv->accept_ev = event_new(base, srv->bound.fd, EV_READ | EV_PERSIST, accept_cb, srv);
        srv->resume_ev = evtimer_new(base, resume_cb, srv);
        if (!srv->accept_ev || !srv->resume_ev || event_add(srv->accept_ev, NULL) < 0)
            rc = rdt_errf(-ENOMEM, err, errlen, "out of memory");
    }
    if (rc) {
        rdt_server_free(srv);
        return rc;
    }
    if (ts->clicon[0])
        dial_once(srv);
    *out = srv;
    return 0;
}

void rdt_server_free(struct rdt_server *srv)
{
    if (!srv)
        return;
    while (!LIST_EMPTY(&srv->pending))
        pending_free(LIST_FIRST(&srv->pending), true);
    if (srv->accept_ev)
        event_free(srv->accept_ev);
    if (srv->resume_ev)
        event_free(srv->resume_ev);
    if (srv->redial_ev)
        event_free(srv->redial_ev);
    rdt_lookup_cancel(srv->lookup);
    rdt_resolver_free(srv->res);
    rdt_unbind(&srv->bound);
    rdt_tls_unref(srv->tls);
    explicit_bzero(srv->ts.password, sizeof(srv->ts.password));
    free(srv);
}

/* The server's string as clients see it: the pipe name with its printf codes expanded. */
static struct rdt_tstring listed(const struct rdt_server *srv)
{
    struct rdt_tstring ts = srv->ts;
    if (srv->bound.name[0])
        snprintf(ts.pipe, sizeof(ts.pipe), "%s", srv->bound.name);
    return ts;
}

int rdt_server_advert(const struct rdt_server *srv, char *buf, size_t len)
{
    struct rdt_tstring ts = listed(srv);
    return rdt_format(&ts, RDT_FORM_ADVERT, NULL, srv->bound.port, buf, len);
}

int rdt_server_client_string(const struct rdt_server *srv, const char *host, char *buf, size_t len)
{
    struct rdt_tstring ts = listed(srv);
    if (!ts.clicon[0])
        return rdt_format(&ts, RDT_FORM_CLIENT, host, srv->bound.port, buf, len);
    snprintf(ts.clicon, sizeof(ts.clicon), "%s", host); /* the client names the server */
    return rdt_format(&ts, RDT_FORM_CLIENT, NULL, srv->bound.port, buf, len);
}

void rdt_server_cap_users(struct rdt_server *srv)
{
    srv->cap_users = true;
}

const struct rdt_bound *rdt_server_bound(const struct rdt_server *srv)
{
    return &srv->bound;
}
