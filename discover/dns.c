/* -domain D: brokers listed in the site's DNS as unicast DNS-SD (RFC 6763) records: the PTR
 * records of _rdq._tcp.D name instances, each instance's SRV gives the broker's host and port,
 * its TXT the protocol version. Read with c-ares, on the browse's loop. */
#include "browse_int.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INSTANCES_MAX 64

#define NAME_TEXT_MAX 1024 /* a name in presentation form, escapes and all */

struct instance {
    struct dns_domain *d;
    char name[NAME_TEXT_MAX];
    struct rdt_lookup *srv, *txt;
    bool srv_done, txt_done;
    char target[RDT_HOST_MAX + 1];
    uint16_t port;
    int version; /* from TXT v= (0: not said) */
    char err[RDT_ERR_MAX];
};

struct dns_domain {
    LIST_ENTRY(dns_domain) link;
    struct rdd_browse *b;
    char domain[RDT_HOST_MAX + 1];
    struct rdt_lookup *ptr;
    bool open; /* counted in b->sources_open */
    int ninst, pending, dropped;
    struct instance inst[INSTANCES_MAX];
};

static void domain_close(struct dns_domain *d)
{
    if (!d->open)
        return;
    d->open = false;
    d->b->sources_open--;
    rdd_browse_check_done(d->b);
}

/* Both answers of an instance are in: the broker is a host to ask (or one that failed). */
static void instance_done(struct instance *in)
{
    struct dns_domain *d = in->d;
    char fail[RDT_ERR_MAX + 64] = "";
    if (!in->target[0])
        snprintf(fail, sizeof(fail), "%s: %s", in->name, in->err);
    else if (in->version && in->version != RDB_VERSION)
        snprintf(fail, sizeof(fail),
                 "%s: the broker speaks version %d of the protocol, this rdq version %d",
                 in->target, in->version, RDB_VERSION);
    const char *name = in->target[0] ? in->target : in->name;
    rdd_browse_add(d->b, name, name, in->target[0] ? in->port : 0, RDD_SRC_DNS,
                   fail[0] ? fail : NULL);
    if (--d->pending == 0 && !d->ptr)
        domain_close(d);
}

static void srv_cb(int rc, const unsigned char *abuf, int alen, const char *err, void *arg)
{
    struct instance *in = arg;
    struct ares_srv_reply *srv = NULL;
    in->srv = NULL;
    in->srv_done = true;
    if (rc == 0 && ares_parse_srv_reply(abuf, alen, &srv) == ARES_SUCCESS && srv &&
        (!srv->host[0] || strcmp(srv->host, ".") == 0 || srv->port == 0)) {
        snprintf(in->err, sizeof(in->err),
                 "its SRV record says no broker is there (target \"%s\", port %u)", srv->host,
                 srv->port);
    } else if (rc == 0 && srv) {
        size_t n = strlen(srv->host);
        snprintf(in->target, sizeof(in->target), "%.*s",
                 (int)(n && srv->host[n - 1] == '.' ? n - 1 : n), srv->host);
        in->port = srv->port;
    } else {
        snprintf(in->err, sizeof(in->err), "no SRV record%s%s", err ? ": " : "", err ? err : "");
    }
    ares_free_data(srv);
    if (in->txt_done)
        instance_done(in);
}

static void txt_cb(int rc, const unsigned char *abuf, int alen, const char *err, void *arg)
{
    (void)err;
    struct instance *in = arg;
    struct ares_txt_ext *txt = NULL;
    in->txt = NULL;
    in->txt_done = true;
    if (rc == 0 && ares_parse_txt_reply_ext(abuf, alen, &txt) == ARES_SUCCESS)
        for (struct ares_txt_ext *t = txt; t; t = t->next)
            if (t->length > 2 && memcmp(t->txt, "v=", 2) == 0)
                in->version = atoi((const char *)t->txt + 2);
    ares_free_data(txt);
    if (in->srv_done)
        instance_done(in);
}

static void instance_add(struct dns_domain *d, const char *name)
{
    if (d->ninst >= INSTANCES_MAX) {
        d->dropped++;
        return;
    }
    struct instance *in = &d->inst[d->ninst++];
    in->d = d;
    snprintf(in->name, sizeof(in->name), "%s", name);
    d->pending++;
    in->srv = rdt_lookup_query(d->b->res, name, ns_t_srv, srv_cb, in); /* made by the PTR's */
    in->txt = rdt_lookup_query(d->b->res, name, ns_t_txt, txt_cb, in);
    if (!in->srv)
        srv_cb(-ENOMEM, NULL, 0, "out of memory", in);
    if (!in->txt)
        txt_cb(-ENOMEM, NULL, 0, "out of memory", in);
}

/* The instances the PTR records of an answer name. Not ares_parse_ptr_reply: it takes host
 * names only, and an instance name is any text ("rdq broker on box17"). */
static int ptr_names(struct dns_domain *d, const unsigned char *abuf, int alen)
{
    ns_msg msg;
    ns_rr rr;
    if (ns_initparse(abuf, alen, &msg) < 0)
        return -EIO;
    for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
        char *name = NULL;
        long len;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
            return -EIO;
        if (ns_rr_type(rr) != ns_t_ptr || ns_rr_class(rr) != ns_c_in)
            continue;
        if (ares_expand_name(ns_rr_rdata(rr), abuf, alen, &name, &len) != ARES_SUCCESS)
            return -EIO;
        instance_add(d, name);
        ares_free_string(name);
    }
    return 0;
}

static void ptr_cb(int rc, const unsigned char *abuf, int alen, const char *err, void *arg)
{
    struct dns_domain *d = arg;
    d->ptr = NULL;
    char what[RDT_HOST_MAX + 32], why[RDT_ERR_MAX];
    snprintf(what, sizeof(what), "domain %s", d->domain);
    d->pending++; /* held while the instances start */
    if (rc == 0 && ptr_names(d, abuf, alen) != 0)
        rc = -EIO, err = "the answer is not a list of PTR records";
    if (rc == 0 && d->ninst == 0)
        rc = -ENOENT, err = "the answer holds no PTR record";
    if (d->dropped) {
        snprintf(why, sizeof(why), "%d more brokers listed, not asked (at most %d a domain)",
                 d->dropped, INSTANCES_MAX);
        rdd_browse_source_failed(d->b, what, why);
    }
    if (rc) {
        snprintf(why, sizeof(why), "no brokers listed (%s)", err);
        rdd_browse_source_failed(d->b, what, why);
    }
    if (--d->pending == 0)
        domain_close(d);
}

void rdd_dns_browse(struct rdd_browse *b, const char *domain)
{
    struct dns_domain *d = calloc(1, sizeof(*d));
    char name[RDT_HOST_MAX + 32];
    if (!d) {
        rdd_browse_source_failed(b, domain, "out of memory");
        return;
    }
    d->b = b;
    snprintf(d->domain, sizeof(d->domain), "%s", domain);
    LIST_INSERT_HEAD(&b->domains, d, link);
    d->open = true;
    b->sources_open++;
    snprintf(name, sizeof(name), "%s.%s", RDB_SERVICE, domain);
    char err[RDT_ERR_MAX] = "out of memory";
    struct rdt_resolver *res = rdd_browse_res(b, err, sizeof(err));
    d->ptr = res ? rdt_lookup_query(res, name, ns_t_ptr, ptr_cb, d) : NULL;
    if (!d->ptr)
        ptr_cb(-ENOMEM, NULL, 0, err, d);
}

/* The deadline: what is still being looked up is reported as such. */
void rdd_dns_expire(struct rdd_browse *b)
{
    struct dns_domain *d;
    char what[RDT_HOST_MAX + 32], why[RDT_ERR_MAX];
    LIST_FOREACH(d, &b->domains, link)
    {
        if (d->ptr) {
            rdt_lookup_cancel(d->ptr);
            d->ptr = NULL;
            snprintf(what, sizeof(what), "domain %s", d->domain);
            snprintf(why, sizeof(why), "no answer from the name servers within %d ms",
                     b->cfg.timeout_ms);
            rdd_browse_source_failed(b, what, why);
        }
        for (int i = 0; i < d->ninst; i++) {
            struct instance *in = &d->inst[i];
            if (in->srv_done && in->txt_done)
                continue;
            rdt_lookup_cancel(in->srv);
            rdt_lookup_cancel(in->txt);
            in->srv = in->txt = NULL;
            if (!in->srv_done)
                snprintf(in->err, sizeof(in->err), "no answer from the name servers in time");
            in->srv_done = in->txt_done = true;
            instance_done(in);
        }
        domain_close(d);
    }
}

void rdd_dns_free_all(struct rdd_browse *b)
{
    struct dns_domain *d;
    while ((d = LIST_FIRST(&b->domains))) {
        LIST_REMOVE(d, link);
        rdt_lookup_cancel(d->ptr);
        for (int i = 0; i < d->ninst; i++) {
            rdt_lookup_cancel(d->inst[i].srv);
            rdt_lookup_cancel(d->inst[i].txt);
        }
        free(d);
    }
}
