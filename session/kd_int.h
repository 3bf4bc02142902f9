/* rdkdsrv inside: links (kd_link.c), the console and packet splitter (kd_split.c), clients and
 * servers (kd_server.c). Private to session/. */
#ifndef RDQ_KD_INT_H
#define RDQ_KD_INT_H

#include "session.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/queue.h>

#define KD_PACKET_MAX (1u << 17) /* a longer "packet" is console text after all */
#define KD_QUEUE_MAX                                                                               \
    (1u << 20)             /* bytes waiting for one peer before its source waits (gdb) or          \
                              they are dropped (a console watcher) */
#define KD_HELLO_MS 10000  /* from the connection to the request or first gdb byte */
#define KD_FLUSH_MS 2000   /* for a last answer to go out */
#define KD_LINGER_MS 500   /* after an error reply to gdb, before the connection ends */
#define KD_CONNECT_MS 3000 /* for a tcp link to answer */
#define KD_SERVERS_MAX 16
#define KD_CLIENTS_MAX 256     /* clients at once, console watchers too ... */
#define KD_PEER_CLIENTS_MAX 32 /* ... and of one peer (an address) */

/* ---- The splitter: what of a shared line is gdb's and what is console text ---------------- */

#define KD_QUIET_MS 200 /* a packet's bytes come at once; a held '$' quiet this long is text, */
#define KD_HOLD_BYTES                                                                              \
    16384 /* as is one held longer than this many bytes take at the line's speed (and the quiet)   \
           */

/* A packet's data ends at its '#': '}' escapes no '#' (an escaped byte is never '#'), and '*'
 * is followed by a count (which may be '}', even just before the '#'). */
enum kd_split_state { SPLIT_TEXT, SPLIT_PACKET, SPLIT_SUM1, SPLIT_SUM2 };

struct kd_split {
    enum kd_split_state st;
    uint8_t *held; /* from a '$' on: a packet until its "#xx" checks, or console text */
    size_t hlen, hcap;
    unsigned sum, sum_got; /* the bytes' sum, and the checksum's first digit */
    unsigned acks;         /* gdb packets sent that the target has not acknowledged ('+' or '-') */
    unsigned starts;       /* '$'s held so far: a new one starts its own time */
};

/* Gets each run of bytes: `gdb` for packets and acks, else console text. */
typedef void (*kd_emit_cb)(void *arg, bool gdb, const uint8_t *p, size_t n);
/* Splits what the target sent. A packet goes to gdb whole, once its checksum has checked; a
 * '$' that turns out to be text (a bad or missing checksum, another '$', too long) goes to the
 * console in its place, as does one held when kd_split_quiet is called. */
void kd_split_link(struct kd_split *s, const uint8_t *p, size_t n, kd_emit_cb emit, void *arg);
/* Whether bytes are held, for the caller to call kd_split_quiet after KD_QUIET_MS of quiet. */
bool kd_split_holding(const struct kd_split *s);
void kd_split_quiet(struct kd_split *s, kd_emit_cb emit, void *arg);
void kd_split_free(struct kd_split *s);

/* gdb's side: counts its packets (for the acks to expect) and finds its interrupts (0x03 outside
 * a packet), which `emit` gets alone with `gdb` false. */
struct kd_scan {
    enum kd_split_state st;
};
void kd_scan_gdb(struct kd_scan *g, struct kd_split *s, const uint8_t *p, size_t n, kd_emit_cb emit,
                 void *arg);

/* ---- Links ----------------------------------------------------------------------------- */

struct rds_kd;
struct kd_client;

struct kd_link {
    struct rds_kd *k;
    char name[RDT_STRING_MAX]; /* canonical: com:Port=/dev/ttyS0,Baud=115200 */
    struct rdt_tstring ts;
    struct rdt_serial *ser; /* a serial line; NULL for a tcp gdbstub */
    int fd;
    struct event *rev, *wev;
    struct evbuffer *out;    /* to the link */
    struct event *quiet;     /* gives held text back to the console */
    int64_t hold_since;      /* when the '$' held now came */
    struct kd_client *owner; /* the gdb client it serves, if any */
    struct kd_split split;
    bool kept;                 /* a console link: open for the server's life */
    bool connecting;           /* a tcp link being dialed (its owner waits) */
    struct rdt_dialer *dialer; /* ... by this */
    struct rdt_conn *conn;     /* a tcp link's connection, whose descriptor is fd */
    LIST_ENTRY(kd_link) entry;
};

/* Parses a link: com (a raw line: no channel=) or tcp to one host and port; its canonical form
 * in canon. -EINVAL with why in err. */
int kd_link_parse(const char *s, struct rdt_tstring *ts, char *canon, size_t len, char *err,
                  size_t errlen);
/* Opens the link `ts` (named `canon`); its events are not armed yet. A serial line is open at
 * once; a tcp link is `connecting` until kd_link_opened says how it went (on a later turn of the
 * loop, within KD_CONNECT_MS). */
int kd_link_open(struct kd_link **out, struct rds_kd *k, const struct rdt_tstring *ts,
                 const char *canon, char *err, size_t errlen);
void kd_link_close(struct kd_link *l);
/* Sends the break-in: a serial BREAK and the sequence (serial lines only). */
void kd_link_break(struct kd_link *l, const struct rds_kd_opts *o);

/* ---- The server and its clients (kd_server.c, kd_client.c) ---------------------------- */

struct kd_server {
    struct rds_kd *k;
    struct rdb_server *rs;
    bool console;
};

enum kc_state { KC_HELLO, KC_LINKING, KC_RELAY, KC_WATCH, KC_CLOSING };

struct kd_client {
    struct rds_kd *k;
    enum kc_state st;
    struct rdt_conn *conn;
    struct rdt_server *srv; /* it came through (a clicon server calls again after it) */
    struct evbuffer *in;    /* the first bytes, until the request or gdb is told apart */
    struct evbuffer *out;   /* to the client */
    struct event *rev, *wev, *timer;
    struct kd_link *link; /* the link it is attached to */
    struct kd_scan scan;
    bool requested; /* it sent a request line */
    bool lingering; /* refused gdb: its error reply has gone, the end comes soon */
    unsigned n;
    size_t dropped; /* console text it was too slow for */
    char peer[64];
    LIST_ENTRY(kd_client) entry;
};

struct rds_kd {
    struct event_base *base;
    struct rds_kd_opts o;
    char def[RDT_STRING_MAX]; /* the default link, canonical ("" for none) */
    struct rdt_tstring def_ts;
    char allow[RDS_KD_ALLOW_MAX][RDT_STRING_MAX];
    struct kd_server servers[KD_SERVERS_MAX];
    int nservers;
    struct kd_link *console;  /* the default link, kept open for console watchers */
    struct rdt_resolver *res; /* for tcp links' names, made on first use */
    LIST_HEAD(, kd_link) links;
    LIST_HEAD(, kd_client) clients;
    unsigned nclients;
    struct rdt_peers peers;
    bool ending;            /* being freed: clicon servers call no more */
    unsigned turned_away;   /* since the last report of it */
    int64_t turned_away_at; /* that report's time */
};

/* kd_client.c */
void kd_client_new(struct rds_kd *k, struct rdt_server *srv, struct rdt_conn *conn,
                   const char *peer, bool watcher);
void kd_client_free(struct kd_client *c);
void kd_client_rearm(struct kd_client *c);
/* Ends a client once `out` has gone (or after KD_FLUSH_MS). */
void kd_client_close(struct kd_client *c);

/* kd_server.c */
/* Attaches a client to a link (`want`: the link it named; NULL: the default). */
void kd_attach(struct kd_client *c, const char *want);
/* A tcp link connected (rc 0) or failed (rc, err): its owner is attached or refused. */
void kd_link_opened(struct kd_link *l, int rc, const char *err);
/* Refuses a client: an ERR line for a request, an error reply to gdb's first packet. */
void kd_refuse(struct kd_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Passes gdb's bytes to its link (interrupts become the break-in on a serial line). */
void kd_to_link(struct kd_client *c, const uint8_t *p, size_t n);
void kd_link_rearm(struct kd_link *l);
/* Lets go of a client's link: closed unless kept for the console. */
void kd_release(struct kd_client *c);

#endif
