/* rdkdsrv's clients: the first bytes told apart (a request line or gdb), then gdb's bytes to its
 * link and the link's packets back; console watchers only read. Each client's queue is bounded
 * and a client that fails ends only itself. */
#include "kd_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK 16384

static void client_cb(evutil_socket_t fd, short what, void *arg);

static void set_timer(struct kd_client *c, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000};
    evtimer_add(c->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct kd_client *c = arg;
    if (c->st == KC_HELLO)
        fprintf(stderr, "rdkdsrv: client %u from %s sent nothing in %d s\n", c->n, c->peer,
                KD_HELLO_MS / 1000);
    kd_client_free(c);
}

void kd_client_new(struct rds_kd *k, struct rdt_server *srv, struct rdt_conn *conn,
                   const char *peer, bool watcher)
{
    struct kd_client *c = calloc(1, sizeof(*c));
    if (!c) {
        rdt_peers_give(&k->peers, peer);
        rdt_conn_free(conn);
        rdt_server_redial(srv);
        return;
    }
    c->k = k;
    c->srv = srv;
    c->conn = conn;
    c->n = ++k->nclients;
    c->st = watcher ? KC_WATCH : KC_HELLO;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    int fd = rdt_conn_fd(conn);
    c->rev = event_new(k->base, fd, EV_READ | EV_PERSIST, client_cb, c);
    c->wev = event_new(k->base, fd, EV_WRITE | EV_PERSIST, client_cb, c);
    c->timer = evtimer_new(k->base, timer_cb, c);
    LIST_INSERT_HEAD(&k->clients, c, entry);
    if (!c->in || !c->out || !c->rev || !c->wev || !c->timer) {
        kd_client_free(c);
        return;
    }
    if (!watcher)
        set_timer(c, KD_HELLO_MS);
    fprintf(stderr, "rdkdsrv: client %u from %s%s\n", c->n, peer,
            watcher ? ": console watcher" : "");
    kd_client_rearm(c);
}

void kd_client_free(struct kd_client *c)
{
    if (!c)
        return;
    kd_release(c);
    LIST_REMOVE(c, entry);
    rdt_peers_give(&c->k->peers, c->peer);
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->timer)
        event_free(c->timer);
    if (c->in)
        evbuffer_free(c->in);
    if (c->out)
        evbuffer_free(c->out);
    rdt_conn_free(c->conn);
    struct rdt_server *srv = c->srv;
    struct rds_kd *k = c->k;
    free(c);
    if (!k->ending)
        rdt_server_redial(srv); /* a clicon server: ready for the next client */
}

void kd_client_close(struct kd_client *c)
{
    kd_release(c);
    c->st = KC_CLOSING;
    set_timer(c, KD_FLUSH_MS);
    kd_client_rearm(c);
}

static bool wants_read(const struct kd_client *c)
{
    if (c->st == KC_LINKING)
        return evbuffer_get_length(c->in) < KD_QUEUE_MAX;
    if (c->st != KC_RELAY)
        return true; /* hello, watchers and closing clients: read, and drop what is not used */
    return !c->link || evbuffer_get_length(c->link->out) < KD_QUEUE_MAX;
}

void kd_client_rearm(struct kd_client *c)
{
    short ev = rdt_conn_events(c->conn);
    if (wants_read(c))
        event_add(c->rev, NULL);
    else
        event_del(c->rev);
    if (evbuffer_get_length(c->out) || (ev & POLLOUT))
        event_add(c->wev, NULL);
    else
        event_del(c->wev);
    if (wants_read(c) && rdt_conn_pending(c->conn))
        event_active(c->rev, EV_READ, 0); /* read ahead: the descriptor may stay quiet */
}

/* The first bytes: a request line (RDQK1 link), or gdb's first bytes for the default link. */
static void hello(struct kd_client *c)
{
    size_t len = evbuffer_get_length(c->in), m = len < 4 ? len : 4;
    char *p = (char *)evbuffer_pullup(c->in, -1);
    if (memcmp(p, RDS_KD_MAGIC, m) != 0) {
        kd_attach(c, NULL);
        return;
    }
    c->requested = true;
    char *nl = len >= 4 ? memchr(p, '\n', len) : NULL;
    if (!nl) {
        if (len > RDS_KD_LINE_MAX)
            kd_refuse(c, "the request is longer than %d bytes", RDS_KD_LINE_MAX);
        return;
    }
    char line[RDS_KD_LINE_MAX + 1];
    size_t n = (size_t)(nl - p);
    if (n > RDS_KD_LINE_MAX) {
        kd_refuse(c, "the request is longer than %d bytes", RDS_KD_LINE_MAX);
        return;
    }
    memcpy(line, p, n);
    line[n - (n && line[n - 1] == '\r')] = '\0';
    evbuffer_drain(c->in, n + 1);
    size_t plen = strlen(RDS_KD_REQUEST);
    if (strncmp(line, RDS_KD_REQUEST, plen) != 0)
        kd_refuse(c, "not a request this server knows (it speaks %s<link>)", RDS_KD_REQUEST);
    else
        kd_attach(c, line + plen);
}

/* What the client sent; false when the client was freed. */
static bool took(struct kd_client *c, const uint8_t *buf, size_t n)
{
    if (c->st == KC_HELLO) {
        evbuffer_add(c->in, buf, n);
        hello(c);
    } else if (c->st == KC_LINKING) {
        evbuffer_add(c->in, buf, n);
    } else if (c->st == KC_RELAY && c->link) {
        kd_to_link(c, buf, n);
    }
    return true;
}

/* Reads once; false when the client ended (and was freed or is closing). */
static bool client_read(struct kd_client *c)
{
    uint8_t buf[READ_CHUNK];
    size_t n = 0;
    int rc = rdt_conn_read(c->conn, buf, sizeof(buf), &n);
    if (rc == -EAGAIN)
        return true;
    if (rc || n == 0) {
        if (rc && c->st != KC_CLOSING)
            fprintf(stderr, "rdkdsrv: client %u: %s\n", c->n, rdt_conn_error(c->conn));
        else if (c->st != KC_CLOSING)
            fprintf(stderr, "rdkdsrv: client %u left\n", c->n);
        kd_client_free(c);
        return false;
    }
    return took(c, buf, n);
}

/* Writes what waits; false when the client was freed. */
static bool client_write(struct kd_client *c)
{
    size_t len = evbuffer_get_length(c->out), n = 0;
    if (len) {
        size_t chunk = len < READ_CHUNK ? len : READ_CHUNK;
        int rc = rdt_conn_write(c->conn, evbuffer_pullup(c->out, (ssize_t)chunk), chunk, &n);
        if (rc && rc != -EAGAIN) {
            kd_client_free(c);
            return false;
        }
        evbuffer_drain(c->out, n);
    }
    if (c->st == KC_CLOSING && !evbuffer_get_length(c->out) && c->requested) {
        kd_client_free(c);
        return false;
    }
    if (c->st == KC_CLOSING && !evbuffer_get_length(c->out) && !c->lingering) {
        c->lingering = true; /* gdb acks the error reply before it shows it: let it */
        set_timer(c, KD_LINGER_MS);
    }
    if (c->link && c->link->owner == c)
        kd_link_rearm(c->link); /* room again for the link's bytes */
    return true;
}

static void client_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct kd_client *c = arg;
    if (wants_read(c) && !client_read(c))
        return;
    if (!client_write(c))
        return;
    kd_client_rearm(c);
}
