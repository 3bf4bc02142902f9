/* rdkdsrv: a KD connection server. Each gdb client is attached to one kernel debugging link at
 * a time (the default, or one it named and may name); one client per link. A serial line's
 * console text goes to console watchers, its packets to gdb; the break-in goes out on attach
 * and for gdb's interrupt. */
#include "kd_int.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK 16384

/* ---- Links on the loop ---- */

static void link_fail(struct kd_link *l, const char *why)
{
    fprintf(stderr, "rdkdsrv: link %s: %s\n", l->name, why);
    struct kd_client *owner = l->owner;
    l->owner = NULL;
    if (owner) {
        owner->link = NULL; /* the link is closed here, once */
        kd_client_close(owner);
    }
    if (l->k->console == l)
        l->k->console = NULL;
    LIST_REMOVE(l, entry);
    kd_link_close(l);
}

static void to_watchers(struct rds_kd *k, const uint8_t *p, size_t n)
{
    struct kd_client *c;
    LIST_FOREACH(c, &k->clients, entry)
    {
        if (c->st != KC_WATCH)
            continue;
        if (evbuffer_get_length(c->out) + n > KD_QUEUE_MAX)
            c->dropped += n; /* a slow watcher never holds up the line */
        else
            evbuffer_add(c->out, p, n);
        kd_client_rearm(c);
    }
}

static void from_link(void *arg, bool gdb, const uint8_t *p, size_t n)
{
    struct kd_link *l = arg;
    if (gdb && l->owner && l->owner->st == KC_RELAY) {
        evbuffer_add(l->owner->out, p, n);
        kd_client_rearm(l->owner);
    } else if (!gdb && l == l->k->console) {
        to_watchers(l->k, p, n);
    }
}

/* Held text goes to the console after KD_QUIET_MS of quiet, or once held as long as
 * KD_HOLD_BYTES take on the line (a console that never pauses does not hold it back for
 * long); `fresh`: a new '$' is held. */
static void hold_timer(struct kd_link *l, bool fresh)
{
    if (!kd_split_holding(&l->split)) {
        evtimer_del(l->quiet);
        return;
    }
    int64_t now = rdt_now_ms(), baud = l->ts.baud ? (int64_t)l->ts.baud : 115200;
    if (fresh)
        l->hold_since = now;
    int64_t left = KD_QUIET_MS + KD_HOLD_BYTES * 10 * 1000 / baud - (now - l->hold_since);
    int64_t ms = left < 0 ? 0 : left < KD_QUIET_MS ? left : KD_QUIET_MS;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000 * 1000)};
    evtimer_add(l->quiet, &tv);
}

/* Reads once; false when the link was closed. */
static bool link_read(struct kd_link *l)
{
    uint8_t buf[READ_CHUNK];
    ssize_t n = read(l->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    if (n <= 0) {
        link_fail(l, n == 0 ? "closed by the other end" : strerror(errno));
        return false;
    }
    if (l->ser) {
        unsigned starts = l->split.starts;
        kd_split_link(&l->split, buf, (size_t)n, from_link, l);
        hold_timer(l, starts != l->split.starts);
    } else
        from_link(l, true, buf, (size_t)n); /* a gdbstub: all of it is gdb's */
    return true;
}

static void link_cb(evutil_socket_t fd, short what, void *arg)
{
    struct kd_link *l = arg;
    if ((what & EV_READ) && !link_read(l))
        return;
    if (evbuffer_get_length(l->out) && evbuffer_write(l->out, fd) < 0 && errno != EAGAIN &&
        errno != EINTR) {
        link_fail(l, strerror(errno));
        return;
    }
    kd_link_rearm(l);
    if (l->owner)
        kd_client_rearm(l->owner); /* room again for gdb's bytes */
}

/* The line was quiet after a '$': what was held is console text. */
static void quiet_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct kd_link *l = arg;
    kd_split_quiet(&l->split, from_link, l);
}

void kd_link_rearm(struct kd_link *l)
{
    if (l->connecting)
        return; /* no descriptor yet */
    if (!l->rev) {
        l->rev = event_new(l->k->base, l->fd, EV_READ | EV_PERSIST, link_cb, l);
        l->wev = event_new(l->k->base, l->fd, EV_WRITE | EV_PERSIST, link_cb, l);
        l->quiet = evtimer_new(l->k->base, quiet_cb, l);
    }
    if (!l->owner || evbuffer_get_length(l->owner->out) < KD_QUEUE_MAX)
        event_add(l->rev, NULL);
    else
        event_del(l->rev);
    if (evbuffer_get_length(l->out))
        event_add(l->wev, NULL);
    else
        event_del(l->wev);
}

void kd_release(struct kd_client *c)
{
    struct kd_link *l = c->link;
    c->link = NULL;
    if (!l || l->owner != c)
        return;
    l->owner = NULL;
    l->split.acks = 0; /* what gdb left unacknowledged: the '+' and '-' that follow are text */
    fprintf(stderr, "rdkdsrv: link %s is free\n", l->name);
    if (l->kept) {
        kd_link_rearm(l);
        return;
    }
    LIST_REMOVE(l, entry);
    kd_link_close(l);
}

static void emit_to_link(void *arg, bool gdb, const uint8_t *p, size_t n)
{
    struct kd_link *l = arg;
    if (gdb || !l->ser)
        evbuffer_add(l->out, p, n);
    else
        kd_link_break(l, &l->k->o); /* kgdboc cannot take gdb's 0x03 itself */
}

void kd_to_link(struct kd_client *c, const uint8_t *p, size_t n)
{
    struct kd_link *l = c->link;
    kd_scan_gdb(&c->scan, &l->split, p, n, emit_to_link, l);
    kd_link_rearm(l);
}

/* ---- Attaching ---- */

void kd_refuse(struct kd_client *c, const char *fmt, ...)
{
    char msg[RDT_ERR_MAX + RDT_STRING_MAX], reply[sizeof(msg) + 8];
    size_t n;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '$' || *p == '#' || *p == '}' || *p == '*')
            *p = ' '; /* one line, and nothing the remote protocol would read as framing */
    fprintf(stderr, "rdkdsrv: client %u refused: %s\n", c->n, msg);
    if (c->requested) {
        evbuffer_add_printf(c->out, "ERR %s\n", msg);
    } else if ((n = rds_gdb_refusal(reply, sizeof(reply), msg)) > 0) {
        evbuffer_add(c->out, reply, n); /* gdb shows an E.text error's text */
    }
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    kd_client_close(c);
}

static bool allowed(const struct rds_kd *k, const char *canon)
{
    if (k->o.allow_any || (k->def[0] && strcmp(canon, k->def) == 0))
        return true;
    for (size_t i = 0; i < k->o.nallow; i++)
        if (strcmp(canon, k->allow[i]) == 0)
            return true;
    return false;
}

static struct kd_link *find_link(struct rds_kd *k, const char *canon)
{
    struct kd_link *l;
    LIST_FOREACH(l, &k->links, entry)
    if (strcmp(l->name, canon) == 0)
        return l;
    return NULL;
}

/* The link a client asks for (or the default), checked: NULL after a refusal. */
static struct kd_link *pick_link(struct kd_client *c, const char *want)
{
    struct rds_kd *k = c->k;
    char canon[RDT_STRING_MAX], err[RDT_ERR_MAX];
    struct rdt_tstring ts = k->def_ts;
    snprintf(canon, sizeof(canon), "%s", k->def);
    if (want && kd_link_parse(want, &ts, canon, sizeof(canon), err, sizeof(err)) != 0)
        return kd_refuse(c, "%s", err), NULL;
    if (want && !allowed(k, canon))
        return kd_refuse(c,
                         "not allowed: %s is not a link this server lets clients name "
                         "(rdkdsrv -link, -allow, -allow-any)",
                         canon),
               NULL;
    if (!canon[0])
        return kd_refuse(c, "this server has no default link (rdkdsrv -link): name one with "
                            "rdq -premote T -k LINK"),
               NULL;
    struct kd_link *l = find_link(k, canon);
    if (l && l->owner)
        return kd_refuse(c, "busy: %s serves another client", canon), NULL;
    if (!l && kd_link_open(&l, k, &ts, canon, err, sizeof(err)) != 0)
        return kd_refuse(c, "%s", err), NULL;
    if (!l->entry.le_prev)
        LIST_INSERT_HEAD(&k->links, l, entry);
    return l;
}

/* The client has its link: the relay starts. */
static void attached(struct kd_client *c)
{
    struct kd_link *l = c->link;
    l->split.acks = 0;
    c->st = KC_RELAY;
    if (c->requested)
        evbuffer_add_printf(c->out, "OK %s\n", l->name);
    fprintf(stderr, "rdkdsrv: client %u: link %s\n", c->n, l->name);
    kd_link_break(l, &c->k->o); /* the target stops, for gdb to find it stopped */
    size_t n = evbuffer_get_length(c->in);
    if (n)
        kd_to_link(c, evbuffer_pullup(c->in, -1), n);
    evbuffer_drain(c->in, n);
    kd_link_rearm(l);
    kd_client_rearm(c);
}

void kd_attach(struct kd_client *c, const char *want)
{
    struct kd_link *l = pick_link(c, want);
    if (!l)
        return;
    evtimer_del(c->timer);
    l->owner = c; /* while it connects too: the link is this client's */
    c->link = l;
    if (l->connecting)
        c->st = KC_LINKING; /* gdb's first bytes wait in `in` */
    else
        attached(c);
}

void kd_link_opened(struct kd_link *l, int rc, const char *err)
{
    struct kd_client *c = l->owner; /* a tcp link is opened for a client, never kept */
    if (rc)
        kd_refuse(c, "%s", err); /* which closes the link */
    else
        attached(c);
}
