/* The records, the update messages that add or delete them, and the check of a reply. */
#include "dnsupdate_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- The records ---- */

/* One DNS label in presentation format: letters, digits, - and _ as they are, the rest \DDD. */
static void label_escape(char *out, size_t len, const char *s)
{
    size_t n = 0;
    for (; *s && n + 5 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_')
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, len - n, "\\%03u", c);
    }
    out[n] = '\0';
}

/* A TXT character-string, quoted. */
static void txt_quote(char *out, size_t len, const char *s)
{
    size_t n = 0;
    out[n++] = '"';
    for (; *s && n + 6 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            out[n++] = '\\', out[n++] = (char)c;
        else if (c < 0x20 || c >= 0x7f)
            n += (size_t)snprintf(out + n, len - n, "\\%03u", c);
        else
            out[n++] = (char)c;
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* The first label of the host name, lower case, as a host name label may be. */
static int host_label(char *out, size_t len, const char *host)
{
    size_t n = 0;
    for (const char *s = host; *s && *s != '.' && n + 1 < len && n < 63; s++) {
        unsigned char c = (unsigned char)tolower((unsigned char)*s);
        out[n++] = isalnum(c) ? (char)c : '-';
    }
    while (n && out[n - 1] == '-')
        n--;
    out[n] = '\0';
    size_t lead = strspn(out, "-");
    memmove(out, out + lead, n - lead + 1);
    return out[0] ? 0 : -EINVAL;
}

static bool rr_parses(const char *text)
{
    ldns_rr *rr = NULL;
    bool ok = LDNS(ldns_rr_new_frm_str)(&rr, text, 0, NULL, NULL) == LDNS_STATUS_OK;
    LDNS(ldns_rr_free)(rr);
    return ok;
}

int rdb_dnsup_records(struct rdb_dnsup *u, const struct rdb_service_info *si, char *err,
                      size_t errlen)
{
    char label[260], host[64], txt[RDB_DNS_RR_MAX - 400] = "", one[300];
    if (host_label(host, sizeof(host), si->host)) {
        snprintf(err, errlen, "-dns-update: the host name \"%.60s\" makes no DNS label", si->host);
        return -EINVAL;
    }
    label_escape(label, sizeof(label), si->instance);
    snprintf(u->inst, sizeof(u->inst), "%s.%s.%s.", label, RDB_SERVICE, u->zone);
    snprintf(u->shown, sizeof(u->shown), "%s", si->instance);
    snprintf(u->srv, RDB_DNS_RR_MAX, "%s %d IN SRV 0 0 %u %s.%s.", u->inst, u->ttl, si->port, host,
             u->zone);
    for (int i = 0; i < si->ntxt; i++) {
        txt_quote(one, sizeof(one), si->txt[i]);
        snprintf(txt + strlen(txt), sizeof(txt) - strlen(txt), " %s", one);
    }
    snprintf(u->txt, RDB_DNS_RR_MAX, "%s %d IN TXT%s", u->inst, u->ttl, txt);
    snprintf(u->ptr, RDB_DNS_RR_MAX, "%s.%s. %d IN PTR %s", RDB_SERVICE, u->zone, u->ttl, u->inst);
    snprintf(u->host, sizeof(u->host), "%s.%s.", host, u->zone);
    for (int i = 0; i < u->naddrs; i++)
        snprintf(u->addr_rr[i], RDB_DNS_RR_MAX, "%s %d IN %s %s", u->host, u->ttl,
                 u->af[i] == AF_INET ? "A" : "AAAA", u->addr[i]);
    bool ok = rr_parses(u->srv) && rr_parses(u->txt) && rr_parses(u->ptr);
    for (int i = 0; ok && i < u->naddrs; i++)
        ok = rr_parses(u->addr_rr[i]);
    if (!ok) {
        snprintf(err, errlen, "-zone %s: the names of the records would be too long", u->zone);
        return -EINVAL;
    }
    return 0;
}

/* ---- The update messages ---- */

static bool push(ldns_rr_list *l, ldns_rr *rr)
{
    if (rr && LDNS(ldns_rr_list_push_rr)(l, rr))
        return true;
    LDNS(ldns_rr_free)(rr);
    return false;
}

enum rr_use { RR_ADD, RR_DELETE, RR_PREREQ };

/* A record to add, that exact record to delete (class NONE, RFC 2136 2.5.4), or the record as a
 * prerequisite that its set is exactly so (TTL 0, 2.4.2). */
static ldns_rr *rr_new(const char *text, enum rr_use use)
{
    ldns_rr *rr = NULL;
    if (LDNS(ldns_rr_new_frm_str)(&rr, text, 0, NULL, NULL) != LDNS_STATUS_OK)
        return NULL;
    if (use == RR_DELETE)
        LDNS(ldns_rr_set_class)(rr, LDNS_RR_CLASS_NONE);
    if (use != RR_ADD)
        LDNS(ldns_rr_set_ttl)(rr, 0);
    return rr;
}

/* The RRset of `type` at `name`, without rdata: class ANY deletes it (RFC 2136 2.5.2), class NONE
 * as a prerequisite says that it does not exist (2.4.3). */
static ldns_rr *rrset_rr(const char *name, ldns_rr_type type, ldns_rr_class class)
{
    ldns_rr *rr = LDNS(ldns_rr_new)();
    ldns_rdf *owner = rr ? LDNS(ldns_dname_new_frm_str)(name) : NULL;
    if (!owner) {
        LDNS(ldns_rr_free)(rr);
        return NULL;
    }
    LDNS(ldns_rr_set_owner)(rr, owner);
    LDNS(ldns_rr_set_type)(rr, type);
    LDNS(ldns_rr_set_class)(rr, class);
    LDNS(ldns_rr_set_ttl)(rr, 0);
    return rr;
}

/* The service's records: SRV and TXT replaced (or deleted), the PTR added (or deleted). */
static bool service_rrs(const struct rdb_dnsup *u, ldns_rr_list *up, bool withdraw)
{
    bool ok = push(up, rrset_rr(u->inst, LDNS_RR_TYPE_SRV, LDNS_RR_CLASS_ANY)) &&
              push(up, rrset_rr(u->inst, LDNS_RR_TYPE_TXT, LDNS_RR_CLASS_ANY)) &&
              push(up, rr_new(u->ptr, withdraw ? RR_DELETE : RR_ADD));
    return ok &&
           (withdraw || (push(up, rr_new(u->srv, RR_ADD)) && push(up, rr_new(u->txt, RR_ADD))));
}

/* Our addresses of family `fam` (0: A, 1: AAAA), each as `use` says, into l. */
static bool addr_rrs(const struct rdb_dnsup *u, ldns_rr_list *l, int fam, enum rr_use use)
{
    bool ok = true;
    for (int i = 0; ok && i < u->naddrs; i++)
        if ((u->af[i] == AF_INET ? 0 : 1) == fam)
            ok = push(l, rr_new(u->addr_rr[i], use));
    return ok;
}

/* The update of x's step (see enum rdb_dns_step). */
static ldns_pkt *update_new(const struct rdb_dnsup *u, const struct rdb_dnsxfer *x)
{
    ldns_rr_list *pr = LDNS(ldns_rr_list_new)(), *up = LDNS(ldns_rr_list_new)();
    bool ok = pr && up;
    ldns_rr_type type = x->fam ? LDNS_RR_TYPE_AAAA : LDNS_RR_TYPE_A;
    if (x->step == RDB_DNS_SERVICE || x->step == RDB_DNS_WITHDRAW)
        ok = ok && service_rrs(u, up, x->step == RDB_DNS_WITHDRAW);
    for (int f = 0; ok && x->step == RDB_DNS_WITHDRAW && f < 2; f++)
        ok = !u->own[f] || addr_rrs(u, up, f, RR_DELETE);
    if (x->step == RDB_DNS_ADDR)
        ok = ok && push(pr, rrset_rr(u->host, type, LDNS_RR_CLASS_NONE)) &&
             addr_rrs(u, up, x->fam, RR_ADD);
    if (x->step == RDB_DNS_ADDR_CHECK)
        ok = ok && addr_rrs(u, pr, x->fam, RR_PREREQ);
    ldns_pkt *p = ok ? LDNS(ldns_update_pkt_new)(LDNS(ldns_dname_new_frm_str)(u->zone),
                                                 LDNS_RR_CLASS_IN, pr, up, NULL)
                     : NULL;
    LDNS(ldns_rr_list_deep_free)(pr);
    LDNS(ldns_rr_list_deep_free)(up);
    return p;
}

/* The signed request on the wire, and its MAC for checking the reply. */
int rdb_dnsup_request(const struct rdb_dnsup *u, struct rdb_dnsxfer *x)
{
    ldns_pkt *p = update_new(u, x);
    int rc = -ENOMEM;
    if (!p)
        goto done;
    LDNS(ldns_pkt_set_random_id)(p);
    LDNS(ldns_pkt_set_rd)(p, false);
    rc = -EINVAL;
    if (LDNS(ldns_pkt_tsig_sign)(p, u->key.name, u->key.secret, RDB_TSIG_FUDGE, u->key.wire_alg,
                                 NULL) != LDNS_STATUS_OK)
        goto done;
    rc = -ENOMEM;
    if (LDNS(ldns_pkt2wire)(&x->wire, p, &x->len) != LDNS_STATUS_OK)
        goto done;
    x->mac = LDNS(ldns_rdf_clone)(LDNS(ldns_rr_rdf)(LDNS(ldns_pkt_tsig)(p), 3));
    x->id = LDNS(ldns_pkt_id)(p);
    rc = x->mac ? 0 : -ENOMEM;
done:
    LDNS(ldns_pkt_free)(p);
    return rc;
}

/* ---- The reply ---- */

static const char *rcode_name(unsigned rcode)
{
    ldns_lookup_table *t = LDNS(ldns_lookup_by_id)(LDNS_DATA(ldns_rcodes), (int)rcode);
    return t ? t->name : "an unknown rcode";
}

static unsigned tsig_error(const ldns_rr *t)
{
    return t && LDNS(ldns_rr_rd_count)(t) > 6 ? LDNS(ldns_rdf2native_int16)(LDNS(ldns_rr_rdf)(t, 5))
                                              : 0;
}

static const char *tsig_error_name(unsigned e)
{
    return e == 16 ? "BADSIG" : e == 17 ? "BADKEY" : e == 18 ? "BADTIME" : "a TSIG error";
}

/* Whether the reply is signed with our key, over our request's MAC. */
static bool reply_signed(const struct rdb_dnsup *u, ldns_pkt *p, const uint8_t *buf, size_t n)
{
    ldns_rr *t = LDNS(ldns_pkt_tsig)(p);
    if (!t)
        return false;
    bool ok = LDNS(ldns_pkt_tsig_verify)(p, buf, n, u->key.name, u->key.secret, u->x.mac);
    if (!LDNS(ldns_pkt_tsig)(p))
        LDNS(ldns_rr_free)(t); /* ldns leaves it out of the packet when it fails half-way */
    return ok;
}

/* What an rcode other than NOERROR means, in msg. */
static void rcode_explain(const struct rdb_dnsup *u, unsigned rcode, char *msg, size_t len)
{
    const char *k = u->key.shown;
    if (rcode == LDNS_RCODE_REFUSED)
        snprintf(msg, len,
                 "the DNS server %s refused the update of %s (REFUSED): the zone does not let "
                 "the TSIG key %s update it (allow-update, update-policy)",
                 u->server, u->zone, k);
    else if (rcode == LDNS_RCODE_NOTAUTH)
        snprintf(msg, len,
                 "the DNS server %s refused the update of %s (NOTAUTH): it is not authoritative "
                 "for that zone",
                 u->server, u->zone);
    else if (rcode == LDNS_RCODE_NOTZONE)
        snprintf(msg, len,
                 "the DNS server %s refused the update of %s (NOTZONE): the names are not in "
                 "that zone",
                 u->server, u->zone);
    else
        snprintf(msg, len, "the DNS server %s could not apply the update of %s (%s)", u->server,
                 u->zone, rcode_name(rcode));
}

/* Checks a reply: its id, its TSIG, its rcode (see dnsupdate_int.h). */
enum rdb_dns_reply rdb_dnsup_reply(struct rdb_dnsup *u, const uint8_t *buf, size_t n, int *rc,
                                   char *msg, size_t len)
{
    ldns_pkt *p = NULL;
    enum rdb_dns_reply r = RDB_DNS_REPLY_IGNORED;
    if (LDNS(ldns_wire2pkt)(&p, buf, n) != LDNS_STATUS_OK || LDNS(ldns_pkt_id)(p) != u->x.id ||
        !LDNS(ldns_pkt_qr)(p) || LDNS(ldns_pkt_get_opcode)(p) != LDNS_PACKET_UPDATE)
        goto done;
    unsigned rcode = LDNS(ldns_pkt_get_rcode)(p), terr = tsig_error(LDNS(ldns_pkt_tsig)(p));
    char refused[sizeof(u->x.refused)];
    snprintf(refused, sizeof(refused),
             "the DNS server %s refused the update of %s: the TSIG key %s is not accepted "
             "(%s / %s%s)",
             u->server, u->zone, u->key.shown, rcode_name(rcode), tsig_error_name(terr),
             terr == 18 ? ": the clocks of the two hosts differ" : "");
    if (!reply_signed(u, p, buf, n)) {
        /* anyone may send it: noted, and taken only when no signed reply comes (RFC 8945 5.3.2) */
        if (terr)
            snprintf(u->x.refused, sizeof(u->x.refused), "%s", refused);
        snprintf(u->x.note, sizeof(u->x.note),
                 "; a reply (%s%s%s) not signed with the key %s was ignored", rcode_name(rcode),
                 terr ? " / " : "", terr ? tsig_error_name(terr) : "", u->key.shown);
        goto done;
    }
    if (LDNS(ldns_pkt_tc)(p)) { /* only now: an unsigned TC bit is anyone's */
        r = RDB_DNS_REPLY_TRUNCATED;
        goto done;
    }
    r = RDB_DNS_REPLY_DONE;
    *rc = -EACCES;
    if (terr) /* signed: BADTIME is */
        snprintf(msg, len, "%s", refused);
    else if (rcode == LDNS_RCODE_YXRRSET || rcode == LDNS_RCODE_NXRRSET)
        *rc = rcode == LDNS_RCODE_YXRRSET ? -EEXIST : -ENOENT, rcode_explain(u, rcode, msg, len);
    else if (rcode != LDNS_RCODE_NOERROR)
        rcode_explain(u, rcode, msg, len), *rc = -EPERM;
    else
        *rc = 0;
done:
    LDNS(ldns_pkt_free)(p);
    return r;
}
