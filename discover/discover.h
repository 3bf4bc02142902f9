/* rdq discover: name resolution (c-ares on the event loop) and broker queries. */
#ifndef RDQ_DISCOVER_H
#define RDQ_DISCOVER_H

#include "broker.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Outcomes of a query; the values are rdq's exit statuses (docs/man/rdq.1). */
enum rdd_status {
    RDD_OK = 0,
    RDD_FAILED = 1,      /* anything else (out of memory, a bad answer) */
    RDD_NOT_FOUND = 3,   /* the host name does not resolve */
    RDD_UNREACHABLE = 4, /* no route to the host, or it does not answer */
    RDD_NO_BROKER = 5,   /* the host answers, but no broker listens there */
    RDD_VERSION = 6,     /* the broker speaks another version of the protocol */
    RDD_TIMEOUT = 7,     /* the broker accepted but did not answer in time */
};

#define RDD_ADDR_MAX 8

/* Resolves `host` (a name, an IPv4 or IPv6 literal, [v6] or \\host) into numeric addresses,
 * with c-ares on its own short-lived loop, within `timeout_ms`. DNS servers come from
 * $RDQ_DNS_SERVERS (host:port,...) when set, else the system's. Returns the count, or a negative
 * rdd_status with the reason in err. */
int rdd_resolve(const char *host, int timeout_ms, char addrs[][64], int max, char *err,
                size_t errlen);

/* The status of a failed look-up (rdt_lookup_* rc). */
enum rdd_status rdd_status_of_lookup(int rc);

/* Strips the optional leading backslashes and [ ] of an IPv6 literal. */
void rdd_host_clean(const char *typed, char *out, size_t len);

struct rdd_row {
    enum rdb_kind kind;
    char advert[RDT_STRING_MAX];
    char desc[RDB_DESC_MAX + 1];
};

struct rdd_result {
    enum rdd_status status;
    char err[2 * RDT_ERR_MAX];
    char addr[64]; /* the address that answered */
    struct rdd_row *rows;
    size_t nrows;
    size_t omitted; /* rows not shown: past the broker's frame limit, or not valid here */
};

/* Queries the broker of `host` on `port` (0: $RDQ_BROKER_PORT, else the default) for the rows
 * that `filter` lets through. The local host ("." or "localhost") is asked over the broker's
 * socket when it is there, which also lists the caller's own unprivileged servers. */
void rdd_query(const char *host, uint16_t port, enum rdb_filter filter, int timeout_ms,
               struct rdd_result *out);
/* The same over the broker's query endpoint `via` (a client string whose server= is replaced
 * by each address of `host`; a pipe's is dialed as it is), e.g. ssl with a pinned thumbprint. */
void rdd_query_via(const char *host, uint16_t port, const struct rdt_tstring *via,
                   enum rdb_filter filter, int timeout_ms, struct rdd_result *out);
void rdd_result_free(struct rdd_result *r);

/* The query port of brokers: `port` when not 0, else $RDQ_BROKER_PORT, else the default. */
uint16_t rdd_broker_port(uint16_t port);

/* Reaches pipe ts->pipe on the other host ts->server through that host's broker (which must run
 * with -relay, its query port `port`, 0: rdd_broker_port's), then completes the pipe's own TLS
 * (spipe) and session layers with `password` (NULL: the string's), all within `timeout_ms`:
 * on the caller's loop, names through `res`. `cb` gets the ready connection (the caller's then)
 * or NULL with rc and err; it is called from the loop, never inside this call, and the dial
 * frees itself after it returns. */
struct rdd_relay;
int rdd_relay_dial_async(struct rdd_relay **out, struct event_base *base, struct rdt_resolver *res,
                         const struct rdt_tstring *ts, const char *password, uint16_t port,
                         int timeout_ms, rdt_dial_cb cb, void *arg, char *err, size_t errlen);
/* Stops a relay dial before its callback (which is then never called). Accepts NULL. */
void rdd_relay_free(struct rdd_relay *r);
/* The same, waiting for it on a loop of its own. */
int rdd_relay_dial(struct rdt_conn **out, const struct rdt_tstring *ts, const char *password,
                   uint16_t port, int timeout_ms, char *err, size_t errlen);

/* The client string that reaches a row's server on `host`: the advertised string plus
 * Server=host. */
int rdd_client_string(const struct rdd_row *row, const char *host, char *buf, size_t len);
/* A row as -json shows it: {kind, type, advert, client, foreign, desc} (foreign: the advert has
 * Foreign, a server that is not rdq's); NULL when its client string does not fit. */
json_t *rdd_row_json(const struct rdd_row *row, const char *host);

/* ---- Many brokers at once ------------------------------------------------------------------ */

struct event_base;
struct rdd_browse;

enum rdd_source { RDD_SRC_HOST, RDD_SRC_DNS, RDD_SRC_LAN };

#define RDD_BROWSE_HOSTS_MAX 1024

/* A broker found, and what it answered. */
struct rdd_host {
    char name[RDT_HOST_MAX + 1];   /* as found: typed, an SRV target, a LAN host's name */
    char server[RDT_HOST_MAX + 1]; /* what its client strings name: the same, or an address */
    uint16_t port;                 /* its query port */
    enum rdd_source source;
    bool done;             /* answered or failed: res says which */
    bool duplicate;        /* done: the same broker as another host found (asked once) */
    struct rdd_result res; /* status, err, the address that answered, the rows */
};

struct rdd_browse_config {
    enum rdb_filter filter;
    int timeout_ms;           /* for everything: sources and hosts */
    uint16_t port;            /* brokers' query port where none is given (0: default) */
    const char *const *hosts; /* HOST or HOST:PORT */
    int nhosts;
    const char *const *domains; /* DNS domains whose _rdq._tcp records list brokers */
    int ndomains;
    bool lan;                      /* brokers on the LAN (DNS-SD through avahi) */
    const struct rdt_tstring *via; /* the brokers' query endpoint, as rdd_query_via */
};

struct rdd_browse_ops {
    void (*host)(const struct rdd_host *h, void *arg); /* found (being asked), and again done */
    void (*source)(const char *what, const char *err, void *arg); /* a domain or the LAN failed */
    void (*done)(void *arg); /* every source and host ended: called once, from the loop */
};

/* Starts asking on `base`. Nothing is called back from inside this call; the callbacks must
 * not free the browse. Everything ends within cfg->timeout_ms. */
int rdd_browse_open(struct rdd_browse **out, struct event_base *base,
                    const struct rdd_browse_config *cfg, const struct rdd_browse_ops *ops,
                    void *arg, char *err, size_t errlen);
void rdd_browse_free(struct rdd_browse *b);
/* The hosts in the order found: prev NULL for the first. */
const struct rdd_host *rdd_browse_next(const struct rdd_browse *b, const struct rdd_host *prev);
bool rdd_browse_finished(const struct rdd_browse *b);

/* Splits HOST, HOST:PORT, [V6]:PORT or an IPv6 literal; `dflt` where no port is given. */
int rdd_host_port(const char *s, uint16_t dflt, char *host, size_t len, uint16_t *port);

/* ---- The browse list's model (rdq -browse in a terminal; no terminal code here) ----------- */

#define RDD_FILTER_MAX 64
#define RDD_KEY_MAX (2 * RDT_HOST_MAX + RDT_STRING_MAX + 32)

struct rdd_model;

/* One row of the list. */
struct rdd_mrow {
    char host[RDT_HOST_MAX + 1];
    enum rdb_kind kind;
    char advert[RDT_STRING_MAX];
    char desc[RDB_DESC_MAX + 1];
    char client[RDT_STRING_MAX + RDT_HOST_MAX + 16]; /* the complete client string */
    char key[RDD_KEY_MAX];                           /* stable: the broker and the advert */
};

enum rdd_mhost_state { RDD_MH_ASKING, RDD_MH_ANSWERED, RDD_MH_FAILED };

/* One host, as the list shows it. */
struct rdd_mhost {
    char name[RDT_HOST_MAX + 1];
    char server[RDT_HOST_MAX + 1];
    uint16_t port;
    enum rdd_mhost_state state;
    char err[2 * RDT_ERR_MAX];
    size_t nrows;
};

/* A model showing the rows of `kind` (the reference's two dialogs: debugging servers, or
 * process and KD servers; or all). NULL when out of memory. */
struct rdd_model *rdd_model_new(enum rdb_filter kind);
void rdd_model_free(struct rdd_model *m);
/* A host found (being asked), answered (its rows join the list, sorted by host) or failed: as
 * rdd_browse_ops.host gives it. */
int rdd_model_host(struct rdd_model *m, const struct rdd_host *h);
/* Forgets every row and host (to ask again), keeping the kind, the filter and the selection's
 * key: the selected row is selected again when it comes back. */
void rdd_model_clear(struct rdd_model *m);
/* Rows whose host, type, advert or description hold every word of `text` (any case). */
int rdd_model_set_filter(struct rdd_model *m, const char *text);
const char *rdd_model_filter(const struct rdd_model *m);
void rdd_model_set_kind(struct rdd_model *m, enum rdb_filter kind);
enum rdb_filter rdd_model_kind(const struct rdd_model *m);
/* The rows shown, the selected one's index among them (it keeps its row whatever arrives; a
 * row filtered away passes it to its neighbour), and moving it by `delta` (clamped). */
size_t rdd_model_count(const struct rdd_model *m);
const struct rdd_mrow *rdd_model_row(const struct rdd_model *m, size_t i);
size_t rdd_model_selected(const struct rdd_model *m);
void rdd_model_move(struct rdd_model *m, long delta);
/* The selected row, or NULL when none is shown. */
const struct rdd_mrow *rdd_model_pick(const struct rdd_model *m);
size_t rdd_model_hosts(const struct rdd_model *m);
const struct rdd_mhost *rdd_model_host_at(const struct rdd_model *m, size_t i);

/* ---- Brokers on the LAN (DNS-SD through avahi-daemon) -------------------------------------- */

struct rdd_lan;

struct rdd_lan_broker {
    char instance[64];           /* the DNS-SD instance name: "rdq broker on HOST" */
    char host[RDT_HOST_MAX + 1]; /* TXT host=, else the resolved host name */
    char addr[64];               /* numeric, IPv4 preferred; link-local IPv6 as fe80::1%eth0 */
    uint16_t port;               /* the broker's query port */
    int version;                 /* TXT v= (0: none) */
};

/* Browses RDB_SERVICE on the LAN on `base` (through avahi-daemon, over the system bus) and
 * resolves each broker once, however many interfaces it is seen on. `found` is called for each
 * broker resolved (once more for an instance whose IPv4 address comes after an IPv6 one: key by
 * instance); `failed` (may be NULL) once for each instance that could not be resolved, with
 * avahi's reason; `done` is called once, with NULL when the browser has all for now and every
 * resolver started so far has ended, or with a message when browsing is not possible (no
 * avahi-daemon). Browsing goes on after `done` until rdd_lan_free. The callbacks run from the
 * loop, never from inside rdd_lan_open, and may call rdd_lan_free. The caller bounds the wait
 * with a timeout of its own. */
int rdd_lan_open(struct rdd_lan **out, struct event_base *base,
                 void (*found)(const struct rdd_lan_broker *b, void *arg),
                 void (*failed)(const char *instance, const char *why, void *arg),
                 void (*done)(const char *error, void *arg), void *arg);
void rdd_lan_free(struct rdd_lan *l);

#endif
