/* One client of a shared session: its join (and the control password's proof), its frames read
 * and checked, its output queued without ever blocking the session, its end. */
#include "hub_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define READS_PER_WAKE 4

static void client_kill(struct hub_client *c)
{
    if (c->dead)
        return;
    c->dead = true;
    event_active(c->h->reap_ev, 0, 0);
}

/* A client that leaves, or is made to, told to the others once. */
static void client_gone(struct hub_client *c, const char *how)
{
    bool was_joined = c->state == HUB_JOINED && !c->dead;
    client_kill(c);
    if (was_joined && !c->h->ending)
        hub_notice_all(c->h, "%s@%s %s (%u clients)", c->user, c->host, how, hub_joined(c->h));
}

void hub_client_send(struct hub_client *c, enum rds_type type, const void *body, size_t len)
{
    if (c->dead)
        return;
    const uint8_t *p = body;
    do {
        size_t n = len > RDS_BODY_MAX ? RDS_BODY_MAX : len;
        uint8_t hdr[RDS_HDR_LEN];
        rds_frame(hdr, type, NULL, 0);
        hdr[1] = (uint8_t)(n >> 8);
        hdr[2] = (uint8_t)n;
        evbuffer_add(c->out, hdr, sizeof(hdr));
        if (n)
            evbuffer_add(c->out, p, n);
        p += n;
        len -= n;
    } while (len);
    event_add(c->wev, NULL);
    if (evbuffer_get_length(c->out) > HUB_QUEUE_MAX)
        client_gone(c, "was dropped: it did not read its output");
}

void hub_client_end(struct hub_client *c, const char *why)
{
    if (c->dead || c->state == HUB_CLOSING)
        return;
    if (why)
        hub_client_send(c, RDS_END, why, strlen(why));
    c->state = HUB_CLOSING;
    event_del(c->rev);
    if (evbuffer_get_length(c->out) == 0) {
        client_kill(c);
        return;
    }
    /* the last frames have HUB_FLUSH_MS to go out: a client that never reads holds nothing */
    struct timeval tv = {.tv_sec = HUB_FLUSH_MS / 1000, .tv_usec = HUB_FLUSH_MS % 1000 * 1000};
    evtimer_add(c->timer, &tv);
}

void hub_client_free(struct hub_client *c)
{
    struct rds_hub *h = c->h;
    TAILQ_REMOVE(&h->clients, c, link);
    h->nclients--;
    rdt_peers_give(&h->peers, c->peer);
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->timer);
    evbuffer_free(c->out);
    rdt_conn_free(c->conn);
    if (c->via->clicon && c->via->rs && !h->ending)
        rdt_server_redial(c->via->rs->srv);
    free(c);
}

void hub_reap(struct rds_hub *h)
{
    struct hub_client *c = TAILQ_FIRST(&h->clients);
    while (c) {
        struct hub_client *next = TAILQ_NEXT(c, link);
        if (c->dead)
            hub_client_free(c);
        c = next;
    }
}

/* ---- Writing ---- */

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hub_client *c = arg;
    while (evbuffer_get_length(c->out)) {
        size_t len = evbuffer_get_contiguous_space(c->out), n = 0;
        int rc = rdt_conn_write(c->conn, evbuffer_pullup(c->out, (ev_ssize_t)len), len, &n);
        if (rc == -EAGAIN)
            return;
        if (rc) {
            client_gone(c, "left (connection lost)");
            return;
        }
        evbuffer_drain(c->out, n);
    }
    event_del(c->wev);
    if (c->state == HUB_CLOSING)
        client_kill(c);
}

/* ---- Joining ---- */

/* A name as a client gives it, kept printable. */
static void take_name(char *dst, const char *src)
{
    snprintf(dst, HUB_NAME_MAX + 1, "%s", src && *src ? src : "unknown");
    for (char *p = dst; *p; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f)
            *p = '?';
}

static void welcome(struct hub_client *c, const char *why_observer)
{
    struct rds_hub *h = c->h;
    c->state = HUB_JOINED;
    evtimer_del(c->timer);
    json_t *w = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)c->id, "role",
                          c->observe ? "observe" : "control", "debugger", h->debugger);
    char *s = w ? json_dumps(w, JSON_COMPACT) : NULL;
    json_decref(w);
    hub_client_send(c, RDS_WELCOME, s ? s : "{}", s ? strlen(s) : 2);
    free(s);
    size_t start = (h->ring_head + RDS_REPLAY_MAX - h->ring_len) % RDS_REPLAY_MAX;
    size_t first = h->ring_len < RDS_REPLAY_MAX - start ? h->ring_len : RDS_REPLAY_MAX - start;
    if (first)
        hub_client_send(c, RDS_OUTPUT, h->ring + start, first);
    if (h->ring_len > first)
        hub_client_send(c, RDS_OUTPUT, h->ring, h->ring_len - first);
    if (why_observer)
        hub_notice(h, c, "you joined as an observer: %s", why_observer);
    hub_notice_all(h, "%s@%s joined%s (%u clients)", c->user, c->host,
                   c->observe ? " as an observer" : "", hub_joined(h));
}

static int on_join(struct hub_client *c, const uint8_t *body, size_t len, char *err, size_t elen)
{
    json_error_t je;
    json_t *j = json_loadb((const char *)body, len, 0, &je);
    json_int_t v = 0;
    const char *user = NULL, *host = NULL;
    int observe = 0;
    if (!j || json_unpack_ex(j, &je, 0, "{s:I,s?s,s?s,s?b}", "v", &v, "user", &user, "host", &host,
                             "observe", &observe)) {
        snprintf(err, elen, "a join that is not {\"v\":1,\"user\":U,\"host\":H}: %s", je.text);
        json_decref(j);
        return -EPROTO;
    }
    take_name(c->user, user);
    take_name(c->host, host);
    json_decref(j);
    if (v != RDS_VERSION) {
        snprintf(err, elen,
                 "The client is not using same version of remoting protocol as the server "
                 "(client %lld, server %d)",
                 (long long)v, RDS_VERSION);
        return -EPROTO;
    }
    c->observe = observe;
    if (observe || !c->h->o.control_password) {
        welcome(c, NULL);
        return 0;
    }
    if (getrandom(c->nonce, sizeof(c->nonce), 0) != sizeof(c->nonce))
        return -EIO;
    c->state = HUB_PROVING;
    hub_client_send(c, RDS_CHALLENGE, c->nonce, sizeof(c->nonce));
    return 0;
}

static int on_proof(struct hub_client *c, const uint8_t *body, size_t len, char *err, size_t elen)
{
    static const uint8_t none[RDS_PROOF_LEN];
    uint8_t want[RDS_PROOF_LEN];
    if (len != RDS_PROOF_LEN) {
        snprintf(err, elen, "a proof of %zu bytes (a proof has %d)", len, RDS_PROOF_LEN);
        return -EPROTO;
    }
    if (rdt_proof(c->h->o.control_password, RDS_PROOF_LABEL, c->nonce, sizeof(c->nonce), want, err,
                  elen))
        return -EIO;
    bool given = !rdt_proof_equal(body, none), ok = rdt_proof_equal(body, want);
    explicit_bzero(want, sizeof(want));
    c->observe = !ok;
    welcome(c, ok      ? NULL
               : given ? "the control password is wrong"
                       : "control needs the session's control password");
    return 0;
}

/* ---- Reading ---- */

static int on_line(struct hub_client *c, const uint8_t *body, size_t len)
{
    char line[RDS_LINE_MAX + 1];
    if (len > RDS_LINE_MAX) {
        hub_notice(c->h, c, "a line longer than %d bytes is refused", RDS_LINE_MAX);
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        if ((body[i] < 0x20 && body[i] != '\t') || body[i] == 0x7f) {
            /* what runs must be what everyone was told: no editing keys, signals or escapes */
            hub_notice(c->h, c, "a line may hold no control character (byte 0x%02x)", body[i]);
            return 0;
        }
    memcpy(line, body, len);
    line[len] = '\0';
    const char *p = line + strspn(line, " \t");
    if (strncmp(p, ".detach", 7) == 0 && (p[7] == '\0' || p[7] == ' ')) {
        client_gone(c, "left");
        return 0;
    }
    hub_line(c->h, c, line);
    return 0;
}

static int on_frame(struct hub_client *c, enum rds_type t, const uint8_t *body, size_t len,
                    char *err, size_t elen)
{
    c->last = time(NULL);
    if (c->state == HUB_JOINING && t == RDS_JOIN)
        return on_join(c, body, len, err, elen);
    if (c->state == HUB_PROVING && t == RDS_PROOF)
        return on_proof(c, body, len, err, elen);
    if (c->state == HUB_JOINED && t == RDS_LINE)
        return on_line(c, body, len);
    if (c->state == HUB_JOINED && t == RDS_INTERRUPT) {
        hub_interrupt_from(c->h, c);
        return 0;
    }
    snprintf(err, elen, "a '%c' frame is not expected %s", (char)t,
             c->state == HUB_JOINING   ? "before the join"
             : c->state == HUB_PROVING ? "before the proof"
                                       : "from a joined client");
    return -EPROTO;
}

static int read_frames(struct hub_client *c, char *err, size_t elen)
{
    for (int i = 0; i < READS_PER_WAKE; i++) {
        size_t room = 0, n = 0;
        uint8_t *p = rds_reader_room(&c->rd, &room);
        int rc = rdt_conn_read(c->conn, p, room, &n);
        if (rc == -EAGAIN)
            return 0;
        if (rc || n == 0)
            return rc ? rc : -ECONNRESET;
        rds_reader_added(&c->rd, n);
        enum rds_type t;
        const uint8_t *body;
        size_t len;
        while ((rc = rds_reader_next(&c->rd, &t, &body, &len, err, elen)) == 1 && !c->dead &&
               c->state != HUB_CLOSING)
            if ((rc = on_frame(c, t, body, len, err, elen)) < 0)
                return rc;
        if (rc < 0)
            return rc;
        if (c->dead || c->state == HUB_CLOSING)
            return 0;
    }
    if (rdt_conn_pending(c->conn))
        event_active(c->rev, EV_READ, 0);
    return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hub_client *c = arg;
    char err[RDT_ERR_MAX] = "";
    int rc = read_frames(c, err, sizeof(err));
    if (rc == -EPROTO || rc == -EIO) {
        bool joined = c->state == HUB_JOINED;
        hub_client_end(c, err);
        if (joined)
            hub_notice_all(c->h, "%s@%s was dropped: %s (%u clients)", c->user, c->host, err,
                           hub_joined(c->h));
    } else if (rc < 0) {
        client_gone(c, "left");
    }
}

static void on_join_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hub_client *c = arg;
    if (c->state == HUB_CLOSING)
        client_kill(c); /* its last frames did not go out in time */
    else
        hub_client_end(c, "no join within 10 s");
}

void hub_client_new(struct hub_server *via, struct rdt_conn *conn, const char *peer)
{
    struct rds_hub *h = via->h;
    char busy[160];
    bool per_peer = !via->rs || rdt_server_caps_peers(via->rs->srv);
    peer = peer ? peer : "?";
    const char *why = h->ending ? "the session is ending"
                                : rdt_peers_take(&h->peers, peer, per_peer, busy, sizeof(busy));
    bool taken = !why;
    struct hub_client *c = taken ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        uint8_t f[RDS_HDR_LEN + sizeof(busy)];
        if (taken)
            rdt_peers_give(&h->peers, peer); /* taken, then no memory for it */
        why = why ? why : "out of memory";
        size_t n = rds_frame(f, RDS_END, why, strlen(why));
        rdt_conn_close_with(conn, f, n);
        if (via->clicon && via->rs && !h->ending)
            rdt_server_redial(via->rs->srv); /* a clicon server calls again */
        return;
    }
    *c = (struct hub_client){.h = h, .via = via, .conn = conn, .id = ++h->next_id};
    c->last = time(NULL);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    snprintf(c->transport, sizeof(c->transport), "%s", rdt_conn_name(conn));
    rds_reader_init(&c->rd);
    c->out = evbuffer_new();
    int fd = rdt_conn_fd(conn);
    c->rev = event_new(h->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(h->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    c->timer = evtimer_new(h->base, on_join_timeout, c);
    TAILQ_INSERT_TAIL(&h->clients, c, link);
    h->nclients++;
    struct timeval tv = {.tv_sec = HUB_JOIN_MS / 1000, .tv_usec = 0};
    evtimer_add(c->timer, &tv);
    event_add(c->rev, NULL);
    if (rdt_conn_pending(conn))
        event_active(c->rev, EV_READ, 0);
}
