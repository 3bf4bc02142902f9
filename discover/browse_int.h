/* Private to discover/: the browse engine's parts (browse.c, dns.c, lan glue). */
#ifndef RDQ_DISCOVER_BROWSE_INT_H
#define RDQ_DISCOVER_BROWSE_INT_H

#include "discover.h"

#include <poll.h>
#include <sys/queue.h>

struct event;

/* One host being asked. `h` comes first: callers get &job->h. */
struct job {
    struct rdd_host h;
    TAILQ_ENTRY(job) link;
    struct rdd_browse *b;
    struct rdt_lookup *lookup;
    struct rdt_dialer *dialer;
    struct rdt_addrs addrs;
    int next_addr;
    bool local;   /* over a pipe: one address only */
    bool waiting; /* found while RDD_BROWSE_ACTIVE_MAX others are being asked */
    bool started;
    int last_rc;
    char last_err[RDT_ERR_MAX];
    struct rdt_conn *c;
    struct event *io, *timer;
    uint8_t *frame; /* the query, as far as it is written */
    size_t frame_len, frame_off;
    struct rdb_reader rd;
};

struct dns_domain;
struct lan_glue;

struct rdd_browse {
    struct event_base *base;
    struct rdd_browse_config cfg;
    struct rdd_browse_ops ops;
    void *arg;
    struct rdt_resolver *res;
    uint16_t port;
    int64_t deadline;
    struct event *deadline_ev, *start_ev;
    unsigned active; /* jobs being asked (each holds a socket) */
    unsigned too_many;
    struct rdt_tstring via;
    bool have_via;
    TAILQ_HEAD(, job) jobs;
    unsigned njobs;
    LIST_HEAD(, dns_domain) domains;
    struct lan_glue *lan_glue;
    int sources_open; /* domains and the LAN still looking */
    bool finished;
};

#define RDD_STR_(x) #x
#define RDD_STR(x) RDD_STR_(x)
#define RDD_BROWSE_ACTIVE_MAX 256 /* hosts asked at once; the others wait their turn */

/* A host found: asked at once unless `fail` says why it cannot be (then reported so). A host
 * found twice (same server and port) is asked once. */
int rdd_browse_add(struct rdd_browse *b, const char *name, const char *server, uint16_t port,
                   enum rdd_source source, const char *fail);
/* The browse's resolver, made on first use; NULL with why in err when it cannot be. */
struct rdt_resolver *rdd_browse_res(struct rdd_browse *b, char *err, size_t errlen);
/* Reports a source that failed (a domain, the LAN): through ops.source. */
void rdd_browse_source_failed(struct rdd_browse *b, const char *what, const char *err);
/* Calls ops.done once when no source looks any more and every job ended. */
void rdd_browse_check_done(struct rdd_browse *b);

/* dns.c: -domain D, the unicast DNS-SD records under _rdq._tcp.D. */
void rdd_dns_browse(struct rdd_browse *b, const char *domain);
void rdd_dns_expire(struct rdd_browse *b);
void rdd_dns_free_all(struct rdd_browse *b);

/* lan glue: brokers on the LAN through avahi. */
void rdd_browse_lan_start(struct rdd_browse *b);
void rdd_browse_lan_expire(struct rdd_browse *b);
void rdd_browse_lan_stop(struct rdd_browse *b);

/* query.c: the rows of a LIST body into out. */
int rdd_take_rows(struct rdd_result *out, json_t *body);

#endif
