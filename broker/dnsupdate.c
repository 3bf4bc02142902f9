/* The broker's DNS-SD records (RFC 6763) in the site's DNS: PTR _rdq._tcp.ZONE, SRV and TXT of
 * the instance, A/AAAA of the host, kept there by dynamic updates (RFC 2136) signed with TSIG.
 * ldns (loaded on first use, ldnsload.c) builds, signs and parses the messages (dnsmsg.c); they
 * travel over a non-blocking UDP socket (TCP when a reply is truncated) on the broker's loop
 * (dnsxfer.c). The settings are read in dnsconf.c, the key file in tsigkey.c; here, publishing
 * and its refresh, and the removal at exit. */
#include "dnsupdate_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#define TRY_MS 1000         /* an update's wait for an answer, before it is sent again ... */
#define TRIES 3             /* ... this many times in all */
#define WITHDRAW_TRY_MS 500 /* the same, for the removal at exit */

#define logf_(u, prio, ...) rdb_logf((u)->log, (u)->log_arg, prio, __VA_ARGS__)

/* ---- Publishing ---- */

static int own_addrs(const struct rdb_dnsup *u)
{
    int n = 0;
    for (int i = 0; i < u->naddrs; i++)
        n += u->own[u->af[i] == AF_INET ? 0 : 1];
    return n;
}

static void published(struct rdb_dnsup *u, int rc, const char *msg)
{
    if (rc == 0) {
        int n = own_addrs(u);
        if (!u->published || u->failing)
            logf_(u, LOG_INFO,
                  "site DNS: published \"%s\" in %s on the DNS server %s port %u (%d address%s, "
                  "TTL %d s)",
                  u->shown, u->zone, u->server, u->port, n, n == 1 ? "" : "es", u->ttl);
        u->published = true;
        u->failing = false;
        return;
    }
    /* said once: its class, as the text carries notes that change from one try to the next */
    int class = -rc * 8 + (int)u->x.step * 2 + u->x.fam;
    if (!u->failing || class != u->last_class)
        logf_(u, LOG_WARNING, "site DNS: %s; trying again every %d s", msg,
              u->ttl / 2 > 0 ? u->ttl / 2 : 1);
    u->last_class = class;
    u->failing = true;
}

static int start(struct rdb_dnsup *u, enum rdb_dns_step step, int fam)
{
    int rc = rdb_dnsup_xfer_start(u, u->base, step, fam, TRY_MS, TRIES);
    u->sent = u->sent || rc == 0;
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof(msg), "cannot send the update of %s to %s port %u: %s", u->zone,
                 u->server, u->port, strerror(-rc));
        published(u, rc, msg);
    }
    return rc;
}

/* The update of the next family of addresses after `fam`, or the end of publishing. */
static void next_addrs(struct rdb_dnsup *u, int fam)
{
    for (int f = fam + 1; f < 2; f++)
        for (int i = 0; i < u->naddrs; i++)
            if ((u->af[i] == AF_INET ? 0 : 1) == f) {
                start(u, u->own[f] ? RDB_DNS_ADDR_CHECK : RDB_DNS_ADDR, f);
                return;
            }
    published(u, 0, NULL);
}

/* An address set: ours (created now, or still exactly as we made it), or someone else's (it was
 * there, or was changed since), then left as it is. */
static void addrs_done(struct rdb_dnsup *u, enum rdb_dns_step step, int fam, int rc,
                       const char *msg)
{
    const char *type = fam ? "AAAA" : "A";
    if (step == RDB_DNS_ADDR_CHECK && rc == -ENOENT) { /* deleted, or changed by others */
        u->own[fam] = false;
        start(u, RDB_DNS_ADDR, fam);
        return;
    }
    if (rc && rc != -EEXIST) {
        published(u, rc, msg);
        return;
    }
    u->own[fam] = rc == 0;
    if (rc == -EEXIST && !u->others[fam])
        logf_(u, LOG_INFO,
              "site DNS: %s already has %s records: they are the site's, left as they are (the "
              "broker adds none and deletes none)",
              u->host, type);
    u->others[fam] = rc == -EEXIST;
    next_addrs(u, fam);
}

void rdb_dnsup_finished(struct rdb_dnsup *u, enum rdb_dns_step step, int fam, int rc,
                        const char *msg)
{
    if (step == RDB_DNS_SERVICE) {
        if (rc == 0)
            next_addrs(u, -1);
        else
            published(u, rc, msg);
        return;
    }
    if (step != RDB_DNS_WITHDRAW) {
        addrs_done(u, step, fam, rc, msg);
        return;
    }
    u->withdraw_rc = rc;
    if (rc == 0)
        logf_(u, LOG_INFO, "site DNS: removed \"%s\" from %s", u->shown, u->zone);
    else
        logf_(u, LOG_WARNING,
              "site DNS: the records stay in %s until this broker starts again (its start "
              "replaces its SRV and TXT) or someone deletes them; caches forget them after their "
              "TTL (%d s): %s",
              u->zone, u->ttl, msg);
}

static void publish(struct rdb_dnsup *u)
{
    if (u->x.active || u->withdrawn)
        return; /* the update in flight does the same */
    start(u, RDB_DNS_SERVICE, 0);
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    publish(arg);
}

static void dnsup_free_(struct rdb_dnsup *u)
{
    rdb_dnsup_xfer_clear(&u->x);
    if (u->refresh)
        event_free(u->refresh);
    explicit_bzero(&u->key, sizeof(u->key));
    free(u);
}

int rdb_dns_check(const struct rdb_config *cfg, char *err, size_t errlen)
{
    struct rdb_dnsup *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->x.fd = -1;
    int rc = rdb_dnsup_setup(u, cfg, err, errlen);
    dnsup_free_(u);
    return rc;
}

int rdb_dnsup_open(struct rdb_dnsup **out, struct event_base *base, const struct rdb_config *cfg,
                   const struct rdb_broker *b, char *err, size_t errlen)
{
    *out = NULL;
    struct rdb_dnsup *u = calloc(1, sizeof(*u));
    struct rdb_service_info si;
    if (!u)
        return -ENOMEM;
    *u = (struct rdb_dnsup){.base = base, .log = cfg->log, .log_arg = cfg->log_arg, .x.fd = -1};
    int rc = rdb_dnsup_setup(u, cfg, err, errlen);
    if (rc == 0 && (rc = rdb_broker_service(b, &si)) != 0)
        snprintf(err, errlen,
                 "-dns-update: no query endpoint to publish: it takes a -listen tcp:port=N "
                 "without a password");
    if (rc == 0)
        rc = rdb_dnsup_records(u, &si, err, errlen);
    u->refresh = rc == 0 ? event_new(base, -1, EV_PERSIST, on_refresh, u) : NULL;
    struct timeval tv = {.tv_sec = u->ttl / 2 > 0 ? u->ttl / 2 : 1};
    if (rc == 0 && (!u->refresh || event_add(u->refresh, &tv)))
        rc = -ENOMEM, snprintf(err, errlen, "-dns-update: out of memory");
    if (rc) {
        dnsup_free_(u);
        return rc;
    }
    if (u->key.mode & 077)
        logf_(u, LOG_WARNING,
              "site DNS: the key file %s can be read by users other than its owner (mode %04o): "
              "chmod 600 it",
              cfg->dns_tsig, u->key.mode);
    publish(u);
    *out = u;
    return 0;
}

int rdb_dnsup_withdraw(struct rdb_dnsup *u, int timeout_ms)
{
    if (!u || u->withdrawn)
        return 0;
    u->withdrawn = true;
    event_del(u->refresh);
    rdb_dnsup_xfer_clear(&u->x);
    if (!u->sent)
        return 0; /* nothing of ours is there */
    struct event_base *base = event_base_new();
    if (!base)
        return -ENOMEM;
    int tries = timeout_ms / WITHDRAW_TRY_MS > 0 ? timeout_ms / WITHDRAW_TRY_MS : 1;
    int try_ms = timeout_ms < WITHDRAW_TRY_MS ? timeout_ms : WITHDRAW_TRY_MS;
    u->withdraw_rc =
        rdb_dnsup_xfer_start(u, base, RDB_DNS_WITHDRAW, 0, try_ms > 0 ? try_ms : 1, tries);
    if (u->withdraw_rc == 0)
        event_base_dispatch(base); /* until finish() leaves no event */
    rdb_dnsup_xfer_clear(&u->x);
    event_base_free(base);
    return u->withdraw_rc;
}

void rdb_dnsup_free(struct rdb_dnsup *u)
{
    if (u)
        dnsup_free_(u);
}
