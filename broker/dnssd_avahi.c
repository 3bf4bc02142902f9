/* The broker's publishing process (dnssd_int.h): the broker's query endpoint published as
 * RDB_SERVICE through avahi-daemon (and, with publish_servers, each server of the broker's last
 * state as RDB_SERVER_SERVICE), on a loop of its own. The client's life cycle follows
 * avahi-publish: it waits for a daemon that is not there, and starts again when the daemon goes
 * away. Messages go to the broker's log over the socket. */
#include "dnssd_int.h"

#include <avahi-client/client.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>
#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#define RETRY_MS 2000    /* a system bus that is not there is tried again this often */
#define RENAMES_MAX 50   /* alternative names tried at once for one service */
#define TXT_ITEM_MAX 255 /* the longest string of a TXT record */
/* avahi-client's calls wait for the daemon's answer (about four for a service): a few services
 * a loop turn, so that the process keeps reading the broker's states while it publishes many */
#define PUBLISH_PER_TURN 8
#define SUMMARY_MS 1000 /* servers established are summed up when none came for this long */

/* One published service: the broker's own, or a server's. */
struct svc {
    struct pub *d;
    unsigned id; /* the record's (0: the broker itself) */
    const char *type;
    char name[64];
    uint16_t port;
    bool skip;    /* a record that cannot be published; kept so that it is said once */
    bool queued;  /* in d->pending */
    bool reset;   /* its group is reset when its turn comes */
    bool limited; /* not published: the daemon's objects-per-client-max */
    AvahiStringList *txt;
    AvahiEntryGroup *group;
    TAILQ_ENTRY(svc) link;
    TAILQ_ENTRY(svc) qlink;
};

struct pub {
    int fd; /* to the broker */
    bool publish_servers;
    uint8_t *in; /* what came from the broker, a message or part of one */
    size_t inlen, incap;
    uint8_t *state; /* the last state's body, and its length */
    size_t statelen;
    struct event *rev;
    struct rdb_avahi_poll *poll;
    AvahiClient *client;
    bool running; /* the client is AVAHI_CLIENT_S_RUNNING */
    bool absent;  /* said that no daemon is there: say when one is */
    struct event *reconnect;
    struct event *sync;
    char host[RDT_HOST_MAX + 1];
    uint16_t port;             /* the broker's query port (0: none to publish) */
    struct svc *self;          /* NULL: the broker itself is not published */
    TAILQ_HEAD(, svc) servers; /* ids increasing, as the records */
    struct svc *cursor;        /* where a sync walk is */
    TAILQ_HEAD(, svc) pending; /* to publish (or reset), a few a turn */
    struct event *pump;
    int nlimited;      /* servers left out for objects-per-client-max ... */
    bool limited_said; /* ... said once */
    int established;   /* servers established since the last summary */
    struct event *summary;
};

/* A message for the broker's log; the broker gone, the process ends. */
__attribute__((format(printf, 3, 4))) static void say(struct pub *d, int prio, const char *fmt, ...)
{
    uint8_t msg[RDB_DNSSD_HDR + 1 + RDB_DNSSD_LOG_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf((char *)msg + RDB_DNSSD_HDR + 1, RDB_DNSSD_LOG_MAX + 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    uint32_t len = 1 + (uint32_t)(n > RDB_DNSSD_LOG_MAX ? RDB_DNSSD_LOG_MAX : n);
    memcpy(msg, &len, 4);
    msg[4] = RDB_DNSSD_LOG;
    msg[RDB_DNSSD_HDR] = (uint8_t)prio;
    for (size_t off = 0, all = RDB_DNSSD_HDR + len; off < all;) {
        ssize_t k = send(d->fd, msg + off, all - off, MSG_NOSIGNAL); /* a blocking socket */
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            _exit(0);
        off += (size_t)k;
    }
}

/* Says once that the daemon is not there (until it is again). */
static void say_absent(struct pub *d, const char *what)
{
    if (!d->absent)
        say(d, LOG_WARNING, "DNS-SD: %s", what);
    d->absent = true;
}

/* ---- One service ---- */

static struct svc *svc_new(struct pub *d, unsigned id, const char *type, const char *name,
                           uint16_t port)
{
    struct svc *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    *s = (struct svc){.d = d, .id = id, .type = type, .port = port};
    snprintf(s->name, sizeof(s->name), "%s", name); /* cut to 63 bytes */
    return s;
}

static void svc_free(struct svc *s)
{
    if (!s)
        return;
    if (s->group)
        avahi_entry_group_free(s->group); /* withdrawn at once */
    avahi_string_list_free(s->txt);
    free(s);
}

/* Takes the DNS-SD way out of a name collision: "name #2", "name #3", ... */
static void svc_rename(struct svc *s)
{
    char *n = avahi_alternative_service_name(s->name);
    if (!n)
        return;
    say(s->d, LOG_NOTICE, "DNS-SD: the name \"%s\" is taken on the LAN; now \"%s\"", s->name, n);
    snprintf(s->name, sizeof(s->name), "%s", n);
    avahi_free(n);
}

static void svc_publish(struct svc *s);
static void svc_queue(struct svc *s, bool reset);
static void summary_cb(evutil_socket_t fd, short what, void *arg);

static void group_cb(AvahiEntryGroup *g, AvahiEntryGroupState state, void *arg)
{
    struct svc *s = arg;
    s->group = g; /* first called inside avahi_entry_group_new */
    switch (state) {
    case AVAHI_ENTRY_GROUP_ESTABLISHED:
        if (s->id == 0) {
            say(s->d, LOG_INFO, "DNS-SD: published \"%s\" as %s on port %u", s->name, s->type,
                (unsigned)s->port);
        } else {
            s->d->established++;
            struct timeval tv = {SUMMARY_MS / 1000, (SUMMARY_MS % 1000) * 1000};
            evtimer_add(s->d->summary, &tv);
        }
        break;
    case AVAHI_ENTRY_GROUP_COLLISION:
        svc_rename(s);
        avahi_entry_group_reset(g);
        svc_publish(s);
        break;
    case AVAHI_ENTRY_GROUP_FAILURE:
        say(s->d, LOG_WARNING, "DNS-SD: \"%s\" not published: %s", s->name,
            avahi_strerror(avahi_client_errno(avahi_entry_group_get_client(g))));
        break;
    default:
        break;
    }
}

static int svc_add(struct svc *s)
{
    return avahi_entry_group_add_service_strlst(s->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, 0,
                                                s->name, s->type, NULL, NULL, s->port, s->txt);
}

/* Adds and commits the service when the daemon runs and its group is empty; a group that
 * failed is reset first. */
static void svc_publish(struct svc *s)
{
    struct pub *d = s->d;
    if (!d->running || s->skip)
        return;
    if (!s->group && !(s->group = avahi_entry_group_new(d->client, group_cb, s))) {
        int err = avahi_client_errno(d->client);
        if (err == AVAHI_ERR_TOO_MANY_OBJECTS && s->id) {
            s->limited = true; /* said once for all, in the summary */
            d->nlimited++;
            struct timeval tv = {SUMMARY_MS / 1000, (SUMMARY_MS % 1000) * 1000};
            evtimer_add(d->summary, &tv);
            return;
        }
        say(d, LOG_WARNING, "DNS-SD: \"%s\" not published: %s", s->name, avahi_strerror(err));
        return;
    }
    if (avahi_entry_group_get_state(s->group) == AVAHI_ENTRY_GROUP_FAILURE)
        avahi_entry_group_reset(s->group);
    int empty = avahi_entry_group_is_empty(s->group);
    if (empty < 0) {
        say(d, LOG_WARNING, "DNS-SD: \"%s\" not published: %s", s->name, avahi_strerror(empty));
        return;
    }
    if (!empty)
        return;
    int rc = svc_add(s);
    for (int i = 0; rc == AVAHI_ERR_COLLISION && i < RENAMES_MAX; i++) {
        svc_rename(s);
        rc = svc_add(s);
    }
    if (rc == 0)
        rc = avahi_entry_group_commit(s->group);
    if (rc < 0)
        say(d, LOG_WARNING, "DNS-SD: \"%s\" not published: %s", s->name, avahi_strerror(rc));
}

/* ---- Publishing a few a turn ---- */

static void svc_queue(struct svc *s, bool reset)
{
    struct pub *d = s->d;
    s->reset |= reset;
    if (s->limited) {
        s->limited = false;
        d->nlimited--;
    }
    if (!s->queued) {
        s->queued = true;
        if (s->id == 0)
            TAILQ_INSERT_HEAD(&d->pending, s, qlink); /* the broker itself first */
        else
            TAILQ_INSERT_TAIL(&d->pending, s, qlink);
    }
    if (!evtimer_pending(d->pump, NULL)) {
        struct timeval now = {0, 0};
        evtimer_add(d->pump, &now);
    }
}

static void svc_unqueue(struct svc *s)
{
    if (s->queued)
        TAILQ_REMOVE(&s->d->pending, s, qlink);
    s->queued = false;
    if (s->limited)
        s->d->nlimited--;
    s->limited = false;
}

/* Servers left out for the daemon's limit are said once, until all are published. */
static void say_limited(struct pub *d)
{
    if (d->nlimited == 0 && d->running && TAILQ_EMPTY(&d->pending))
        d->limited_said = false;
    else if (d->nlimited > 0 && !d->limited_said)
        say(d, LOG_WARNING,
            "DNS-SD: %d server%s not published: avahi-daemon allows this client no more "
            "objects (objects-per-client-max in avahi-daemon.conf)",
            d->nlimited, d->nlimited == 1 ? "" : "s");
    d->limited_said |= d->nlimited > 0;
}

/* Servers established, and those left out, summed up once none came for SUMMARY_MS. */
static void summary_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pub *d = arg;
    if (d->established)
        say(d, LOG_INFO, "DNS-SD: %d server%s published as %s", d->established,
            d->established == 1 ? "" : "s", RDB_SERVER_SERVICE);
    d->established = 0;
    say_limited(d);
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pub *d = arg;
    struct svc *s;
    for (int n = 0; n < PUBLISH_PER_TURN && (s = TAILQ_FIRST(&d->pending)); n++) {
        TAILQ_REMOVE(&d->pending, s, qlink);
        s->queued = false;
        if (s->reset && s->group)
            avahi_entry_group_reset(s->group);
        s->reset = false;
        svc_publish(s);
    }
    if (!TAILQ_EMPTY(&d->pending)) {
        struct timeval now = {0, 0};
        evtimer_add(d->pump, &now); /* the rest on the next turns, after what else is due */
    } else if (d->nlimited == 0) {
        say_limited(d); /* all published: said again when it happens again */
    }
}

/* ---- The broker's servers ---- */

/* The server's own port when it is reached over tcp or ssl, else the broker's. The advert is
 * read as a client's string (Password=* is one), as a client would dial it. */
static uint16_t server_port(const struct pub *d, const char *advert)
{
    struct rdt_tstring ts;
    char why[RDT_ERR_MAX];
    if (rdt_parse_advert(advert, &ts, why, sizeof(why)) == 0 &&
        (ts.proto == RDT_TCP || ts.proto == RDT_SSL) && ts.port_lo)
        return ts.port_lo;
    return d->port;
}

static struct svc *server_svc(struct pub *d, unsigned id, const struct rdb_entry *e)
{
    char name[64];
    snprintf(name, sizeof(name), "%s on %s", e->advert, d->host);
    struct svc *s = svc_new(d, id, RDB_SERVER_SERVICE, name, server_port(d, e->advert));
    if (!s)
        return NULL;
    if (strlen("advert=") + strlen(e->advert) > TXT_ITEM_MAX || !s->port) {
        say(d, LOG_NOTICE, "DNS-SD: %.60s not published: %s", e->advert,
            s->port ? "its string is too long for a TXT record" : "no port to publish");
        s->skip = true;
        return s;
    }
    s->txt = avahi_string_list_add_printf(NULL, "advert=%s", e->advert);
    s->txt = avahi_string_list_add_printf(s->txt, "kind=%s", rdb_kind_name(e->kind));
    s->txt = avahi_string_list_add_printf(s->txt, "v=%d", RDB_VERSION);
    return s;
}

/* A server gone: withdrawn at once; its place at the daemon goes to one left out. */
static void server_drop(struct pub *d, struct svc *s)
{
    bool had_group = s->group != NULL;
    svc_unqueue(s);
    TAILQ_REMOVE(&d->servers, s, link);
    svc_free(s);
    if (!had_group || d->nlimited == 0)
        return;
    struct svc *o;
    TAILQ_FOREACH(o, &d->servers, link)
    if (o->limited) {
        svc_queue(o, false);
        break;
    }
}

/* One listed record, in increasing ids: published servers before it are gone. */
static void sync_one(unsigned id, const struct rdb_entry *e, void *arg)
{
    struct pub *d = arg;
    while (d->cursor && d->cursor->id < id) {
        struct svc *gone = d->cursor;
        d->cursor = TAILQ_NEXT(gone, link);
        server_drop(d, gone);
    }
    if (d->cursor && d->cursor->id == id) {
        d->cursor = TAILQ_NEXT(d->cursor, link);
        return;
    }
    struct svc *s = server_svc(d, id, e);
    if (!s)
        return;
    if (d->cursor)
        TAILQ_INSERT_BEFORE(d->cursor, s, link);
    else
        TAILQ_INSERT_TAIL(&d->servers, s, link);
    svc_queue(s, false);
}

/* The servers of the last state, in increasing ids. */
static void sync_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pub *d = arg;
    static struct rdb_entry e;
    d->cursor = TAILQ_FIRST(&d->servers);
    for (const uint8_t *p = d->state, *end = p + d->statelen; end - p >= RDB_DNSSD_ENTRY_HDR;) {
        uint32_t id;
        uint16_t len;
        memcpy(&id, p, 4);
        memcpy(&len, p + 5, 2);
        e.kind = (enum rdb_kind)p[4];
        p += RDB_DNSSD_ENTRY_HDR;
        if (len > end - p || len >= sizeof(e.advert))
            break;
        memcpy(e.advert, p, len);
        e.advert[len] = '\0';
        p += len;
        sync_one(id, &e, d);
    }
    while (d->cursor) {
        struct svc *gone = d->cursor;
        d->cursor = TAILQ_NEXT(gone, link);
        server_drop(d, gone);
    }
}

/* ---- The client ---- */

/* Every service, queued to be published (after a reset of its group, with `reset`). */
static void queue_all(struct pub *d, bool reset)
{
    if (d->self)
        svc_queue(d->self, reset);
    struct svc *s;
    TAILQ_FOREACH(s, &d->servers, link)
    svc_queue(s, reset);
}

static void schedule_reconnect(struct pub *d, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_add(d->reconnect, &tv);
}

static void client_cb(AvahiClient *c, AvahiClientState state, void *arg)
{
    struct pub *d = arg;
    d->client = c; /* first called inside avahi_client_new */
    d->running = state == AVAHI_CLIENT_S_RUNNING;
    switch (state) {
    case AVAHI_CLIENT_S_RUNNING:
        if (d->absent)
            say(d, LOG_NOTICE, "DNS-SD: avahi-daemon is running; publishing");
        d->absent = false;
        queue_all(d, false);
        break;
    case AVAHI_CLIENT_S_COLLISION:
    case AVAHI_CLIENT_S_REGISTERING: /* the host's name changes: publish again when running */
        queue_all(d, true);
        break;
    case AVAHI_CLIENT_CONNECTING:
        say_absent(d, "avahi-daemon is not running; publishing when it starts");
        break;
    case AVAHI_CLIENT_FAILURE:
        /* a new client, out of this callback: the old one and its groups are freed then */
        if (avahi_client_errno(c) == AVAHI_ERR_DISCONNECTED) {
            say_absent(d, "avahi-daemon went away; publishing again when it is back");
            schedule_reconnect(d, 0);
        } else {
            char why[160];
            snprintf(why, sizeof(why), "avahi-client: %s; trying again",
                     avahi_strerror(avahi_client_errno(c)));
            say_absent(d, why);
            schedule_reconnect(d, RETRY_MS);
        }
        break;
    }
}

static void forget_groups(struct pub *d)
{
    if (d->self)
        d->self->group = NULL;
    struct svc *s;
    TAILQ_FOREACH(s, &d->servers, link)
    s->group = NULL;
}

static void client_connect(struct pub *d)
{
    int err = 0;
    AvahiClient *c =
        avahi_client_new(rdb_avahi_poll_api(d->poll), AVAHI_CLIENT_NO_FAIL, client_cb, d, &err);
    d->client = c;
    if (c)
        return;
    /* no system bus at all: tried again on a timer */
    d->running = false;
    say_absent(d, "avahi-daemon is not running; publishing when it starts");
    schedule_reconnect(d, RETRY_MS);
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pub *d = arg;
    forget_groups(d); /* the client frees them */
    if (d->client)
        avahi_client_free(d->client);
    d->client = NULL;
    d->running = false;
    client_connect(d);
}

/* ---- The broker's messages ---- */

#define STATE_MAX (64u << 20) /* more is not a state from the broker */

static void on_message(struct pub *d, uint8_t type, uint8_t *body, uint32_t len)
{
    if (type != RDB_DNSSD_STATE || !d->publish_servers)
        return;
    free(d->state);
    d->state = malloc(len ? len : 1);
    d->statelen = d->state ? len : 0;
    if (d->state)
        memcpy(d->state, body, len);
    event_active(d->sync, EV_TIMEOUT, 0);
}

/* What the broker sent; its end (or an error) ends the process, with the broker. */
static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct pub *d = arg;
    if (d->incap - d->inlen < 65536) {
        size_t cap = d->incap ? d->incap * 2 : 65536;
        uint8_t *in = realloc(d->in, cap);
        if (!in)
            _exit(1);
        d->in = in;
        d->incap = cap;
    }
    ssize_t n = recv(fd, d->in + d->inlen, d->incap - d->inlen, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        _exit(0);
    d->inlen += (size_t)n;
    size_t off = 0;
    for (;;) {
        uint32_t len;
        if (d->inlen - off < RDB_DNSSD_HDR)
            break;
        memcpy(&len, d->in + off, 4);
        if (len > STATE_MAX)
            _exit(1);
        if (d->inlen - off - RDB_DNSSD_HDR < len)
            break;
        on_message(d, d->in[off + 4], d->in + off + RDB_DNSSD_HDR, len);
        off += RDB_DNSSD_HDR + len;
    }
    memmove(d->in, d->in + off, d->inlen - off);
    d->inlen -= off;
}

/* ---- Life cycle ---- */

static int self_svc(struct pub *d, const struct rdb_service_info *info)
{
    if (!info)
        return 0;
    d->port = info->port;
    d->self = svc_new(d, 0, RDB_SERVICE, info->instance, info->port);
    if (!d->self)
        return -ENOMEM;
    for (int i = info->ntxt - 1; i >= 0; i--) /* each added in front */
        d->self->txt = avahi_string_list_add(d->self->txt, info->txt[i]);
    return 0;
}

/* Nothing is freed: the process ends with _exit, its client's services withdrawn by the daemon
 * when the client's connection ends. */
_Noreturn void rdb_dnssd_child(int fd, const struct rdb_service_info *self, bool publish_servers)
{
    struct event_base *base = event_base_new();
    struct pub *d = calloc(1, sizeof(*d));
    if (!base || !d)
        _exit(1);
    d->fd = fd;
    d->publish_servers = publish_servers;
    TAILQ_INIT(&d->servers);
    TAILQ_INIT(&d->pending);
    gethostname(d->host, sizeof(d->host) - 1);
    d->poll = rdb_avahi_poll_new(base);
    d->reconnect = evtimer_new(base, reconnect_cb, d);
    d->sync = event_new(base, -1, 0, sync_cb, d);
    d->pump = evtimer_new(base, pump_cb, d);
    d->summary = evtimer_new(base, summary_cb, d);
    d->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, d);
    if (!d->poll || !d->reconnect || !d->sync || !d->pump || !d->summary || !d->rev ||
        event_add(d->rev, NULL) != 0 || self_svc(d, self) != 0)
        _exit(1);
    client_connect(d);
    event_base_dispatch(base);
    _exit(0);
}
