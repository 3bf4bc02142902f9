/* Private to the files of -dns-update (dnsupdate.c, dnsconf.c, dnsmsg.c, dnsxfer.c): the state
 * of the broker's records in the site's DNS, and what each file does with it. */
#ifndef RDQ_BROKER_DNSUPDATE_INT_H
#define RDQ_BROKER_DNSUPDATE_INT_H

#include "dnsupdate.h"
#include "ldnsload.h"
#include "tsigkey.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RDB_DNS_ADDRS_MAX 8
#define RDB_DNS_RR_MAX 1400 /* one record in presentation format */

/* The updates. Publishing (at start and at each refresh) is the service's records (PTR, SRV,
 * TXT), then each family of addresses on its own, as a set of HOST.ZONE is the broker's only when
 * it created it: RDB_DNS_ADDR adds ours on the prerequisite that no such set exists (RFC 2136
 * 2.4.3), RDB_DNS_ADDR_CHECK asks whether the set the broker created is still exactly its own
 * (2.4.2). The removal deletes the service's records and the address sets the broker created. */
enum rdb_dns_step { RDB_DNS_SERVICE, RDB_DNS_ADDR, RDB_DNS_ADDR_CHECK, RDB_DNS_WITHDRAW };

/* The one update in flight. */
struct rdb_dnsxfer {
    struct event_base *base;
    enum rdb_dns_step step;
    int fam; /* RDB_DNS_ADDR*: 0 for A, 1 for AAAA */
    bool active, tcp;
    uint8_t *wire; /* the signed request */
    size_t len, outoff;
    ldns_rdf *mac; /* its MAC: the reply's is computed over it */
    uint16_t id;
    int fd;
    struct event *ev, *timer;
    uint8_t *in;
    size_t inlen;
    int tries, try_ms, total_ms;
    char note[256];    /* a reply that was ignored, for the message when no other comes */
    char refused[384]; /* an unsigned TSIG error, the outcome when no signed reply comes */
};

struct rdb_dnsup {
    struct event_base *base;
    void (*log)(int prio, const char *msg, void *arg);
    void *log_arg;
    struct rdb_tsigkey key;
    char zone[256];   /* without the final dot */
    char server[256]; /* as given, without the port */
    unsigned port;
    struct sockaddr_storage sa;
    socklen_t salen;
    int ttl;
    int naddrs;
    int af[RDB_DNS_ADDRS_MAX];
    char addr[RDB_DNS_ADDRS_MAX][INET6_ADDRSTRLEN];
    char inst[320];  /* the instance's name, escaped: "rdq\032broker\032on\032h._rdq..." */
    char shown[128]; /* the same as people read it */
    char host[320];  /* "HOST.ZONE." */
    char srv[RDB_DNS_RR_MAX], txt[RDB_DNS_RR_MAX]; /* our own RRsets: replaced, then deleted */
    char ptr[RDB_DNS_RR_MAX]; /* in a set other services share: added, deleted exactly */
    char addr_rr[RDB_DNS_ADDRS_MAX][RDB_DNS_RR_MAX]; /* A/AAAA of HOST.ZONE, addr[i]'s */
    bool own[2];    /* the A (0) and AAAA (1) sets of HOST.ZONE are ours: we created them */
    bool others[2]; /* that set is someone else's, said in the log */
    struct event *refresh;
    struct rdb_dnsxfer x;
    bool sent, published, failing, withdrawn;
    int withdraw_rc;
    int last_class; /* the last failure logged: -rc, step and family (published()) */
};

/* dnsconf.c: everything but the records themselves, from the settings; loads ldns. */
int rdb_dnsup_setup(struct rdb_dnsup *u, const struct rdb_config *cfg, char *err, size_t errlen);

/* dnsmsg.c: the records of the broker `si` describes, checked to parse. */
int rdb_dnsup_records(struct rdb_dnsup *u, const struct rdb_service_info *si, char *err,
                      size_t errlen);
/* dnsmsg.c: the signed request of x (its step) on the wire, and its MAC. */
int rdb_dnsup_request(const struct rdb_dnsup *u, struct rdb_dnsxfer *x);

enum rdb_dns_reply { RDB_DNS_REPLY_IGNORED, RDB_DNS_REPLY_DONE, RDB_DNS_REPLY_TRUNCATED };
/* dnsmsg.c: checks a reply: its id, its TSIG, its rcode; RDB_DNS_REPLY_DONE with the outcome in
 * *rc and msg (a prerequisite that fails: -EEXIST for YXRRSET, -ENOENT for NXRRSET). */
enum rdb_dns_reply rdb_dnsup_reply(struct rdb_dnsup *u, const uint8_t *buf, size_t n, int *rc,
                                   char *msg, size_t len);

/* dnsxfer.c: sends the update of `step` (`fam`: the family of the addresses) on `base`; its
 * outcome goes to rdb_dnsup_finished. */
int rdb_dnsup_xfer_start(struct rdb_dnsup *u, struct event_base *base, enum rdb_dns_step step,
                         int fam, int try_ms, int tries);
void rdb_dnsup_xfer_clear(struct rdb_dnsxfer *x);

/* dnsupdate.c: the outcome of the update that ended (cleared already): 0, or -errno and msg. */
void rdb_dnsup_finished(struct rdb_dnsup *u, enum rdb_dns_step step, int fam, int rc,
                        const char *msg);

#endif
