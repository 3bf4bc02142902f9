/* The broker's DNS-SD records (RFC 6763) in the site's DNS: PTR _rdq._tcp.ZONE, SRV and TXT of
 * the instance, A/AAAA of the host, kept there by dynamic updates (RFC 2136) signed with TSIG.
 * ldns builds, signs and parses the messages; they travel over a non-blocking UDP socket (TCP when
 * a reply is truncated) on the broker's loop. */
#include "dnsupdate.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <ifaddrs.h>
#include <ldns/ldns.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>

#define ADDRS_MAX 8
#define KEYFILE_MAX 16384
#define FUDGE 300           /* seconds of clock difference a signature allows (RFC 8945) */
#define TRY_MS 1000         /* an update's wait for an answer, before it is sent again ... */
#define TRIES 3             /* ... this many times in all */
#define WITHDRAW_TRY_MS 500 /* the same, for the removal at exit */
#define IN_MAX (2 + 65535)  /* a reply, with its length over TCP */
#define RR_MAX 1400         /* one record in presentation format */

struct dkey {
    char name[256];    /* "NAME." */
    char shown[256];   /* "NAME", for messages */
    char alg[32];      /* as the file says: "hmac-sha256" */
    char wire_alg[32]; /* as TSIG names it: "hmac-sha256." */
    char secret[512];  /* base64 */
};

/* The one update in flight: the start-up or refresh update, or the removal. */
struct xfer {
    struct event_base *base;
    bool active, withdraw, tcp;
    uint8_t *wire; /* the signed request */
    size_t len, outoff;
    ldns_rdf *mac; /* its MAC: the reply's is computed over it */
    uint16_t id;
    int fd;
    struct event *ev, *timer;
    uint8_t *in;
    size_t inlen;
    int tries, try_ms, total_ms;
    char note[256]; /* a reply that was ignored, for the message when no other comes */
};

struct rdb_dnsup {
    struct event_base *base;
    void (*log)(int prio, const char *msg, void *arg);
    void *log_arg;
    struct dkey key;
    char zone[256];   /* without the final dot */
    char server[256]; /* as given, without the port */
    unsigned port;
    struct sockaddr_storage sa;
    socklen_t salen;
    int ttl;
    int naddrs;
    int af[ADDRS_MAX];
    char addr[ADDRS_MAX][INET6_ADDRSTRLEN];
    char inst[320];  /* the instance's name, escaped: "rdq\032broker\032on\032h._rdq..." */
    char shown[128]; /* the same as people read it */
    char srv[RR_MAX], txt[RR_MAX];      /* our own RRsets: replaced, then deleted */
    char shared[1 + ADDRS_MAX][RR_MAX]; /* RRs in sets others may share: added, deleted exactly */
    int nshared;
    struct event *refresh;
    struct xfer x;
    bool published, failing, withdrawn;
    int withdraw_rc;
    char last[512]; /* the last failure logged */
};

static void logf_(struct rdb_dnsup *u, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(struct rdb_dnsup *u, int prio, const char *fmt, ...)
{
    if (!u->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    u->log(prio, msg, u->log_arg);
}

/* ---- The key file: BIND's key "NAME" { algorithm ALG; secret "BASE64"; }; ---- */

struct lex {
    const char *p;
    int line;
};

static void lex_skip(struct lex *l)
{
    for (;;) {
        while (isspace((unsigned char)*l->p))
            l->line += *l->p++ == '\n';
        if (*l->p == '#' || (l->p[0] == '/' && l->p[1] == '/')) {
            while (*l->p && *l->p != '\n')
                l->p++;
        } else if (l->p[0] == '/' && l->p[1] == '*') {
            const char *end = strstr(l->p + 2, "*/");
            for (const char *q = l->p; q < (end ? end : l->p + strlen(l->p)); q++)
                l->line += *q == '\n';
            l->p = end ? end + 2 : l->p + strlen(l->p);
        } else {
            return;
        }
    }
}

/* The next token: a word, a quoted string (without its quotes) or one of { } ;. 1, 0 at the end
 * of the file, -1 when a token is too long or a string not closed. */
static int lex_next(struct lex *l, char *tok, size_t len)
{
    lex_skip(l);
    if (!*l->p)
        return 0;
    size_t n = 0;
    if (strchr("{};", *l->p)) {
        tok[n++] = *l->p++;
    } else if (*l->p == '"') {
        for (l->p++; *l->p && *l->p != '"' && *l->p != '\n' && n + 1 < len;)
            tok[n++] = *l->p++;
        if (*l->p != '"')
            return -1;
        l->p++;
    } else {
        while (*l->p && !isspace((unsigned char)*l->p) && !strchr("{};\"", *l->p) && n + 1 < len)
            tok[n++] = *l->p++;
        if (*l->p && !isspace((unsigned char)*l->p) && !strchr("{};\"", *l->p))
            return -1;
    }
    tok[n] = '\0';
    return 1;
}

static bool lex_want(struct lex *l, const char *want)
{
    char tok[8];
    return lex_next(l, tok, sizeof(tok)) == 1 && strcmp(tok, want) == 0;
}

static const struct {
    const char *name, *wire;
} algs[] = {
    {"hmac-md5", "hmac-md5.sig-alg.reg.int."},
    {"hmac-md5.sig-alg.reg.int", "hmac-md5.sig-alg.reg.int."},
    {"hmac-sha1", "hmac-sha1."},
    {"hmac-sha224", "hmac-sha224."},
    {"hmac-sha256", "hmac-sha256."},
    {"hmac-sha384", "hmac-sha384."},
    {"hmac-sha512", "hmac-sha512."},
};

static int key_alg(struct dkey *k, const char *alg, char *why, size_t len)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcasecmp(alg, algs[i].name) == 0) {
            snprintf(k->alg, sizeof(k->alg), "%s", algs[i].name);
            snprintf(k->wire_alg, sizeof(k->wire_alg), "%s", algs[i].wire);
            return 0;
        }
    snprintf(why, len,
             "algorithm \"%.40s\": a TSIG key is hmac-md5, hmac-sha1, hmac-sha224, hmac-sha256, "
             "hmac-sha384 or hmac-sha512",
             alg);
    return -EINVAL;
}

/* The statements inside key "NAME" { ... }. */
static int key_body(struct lex *l, struct dkey *k, char *why, size_t len)
{
    char tok[512], val[512];
    int rc;
    while ((rc = lex_next(l, tok, sizeof(tok))) == 1 && strcmp(tok, "}") != 0) {
        bool alg = strcmp(tok, "algorithm") == 0, secret = strcmp(tok, "secret") == 0;
        if ((!alg && !secret) || lex_next(l, val, sizeof(val)) != 1 || !lex_want(l, ";")) {
            snprintf(why, len, "line %d: expected algorithm NAME; or secret \"BASE64\";", l->line);
            return -EINVAL;
        }
        if (alg && key_alg(k, val, why, len))
            return -EINVAL;
        if (secret)
            snprintf(k->secret, sizeof(k->secret), "%s", val);
    }
    if (rc != 1) {
        snprintf(why, len, "line %d: the key's { ... } is not closed", l->line);
        return -EINVAL;
    }
    if (!k->alg[0] || !k->secret[0]) {
        snprintf(why, len, "key \"%.60s\" has no %s", k->shown, k->alg[0] ? "secret" : "algorithm");
        return -EINVAL;
    }
    return 0;
}

static int key_parse(struct dkey *k, const char *text, char *why, size_t len)
{
    struct lex l = {.p = text, .line = 1};
    char tok[256];
    if (!lex_want(&l, "key") || lex_next(&l, tok, sizeof(tok)) != 1 || strchr("{};", tok[0]) ||
        !lex_want(&l, "{")) {
        snprintf(why, len,
                 "line %d: not a BIND key file (key \"NAME\" { algorithm hmac-sha256; secret "
                 "\"BASE64\"; };, as tsig-keygen writes it)",
                 l.line);
        return -EINVAL;
    }
    size_t n = strlen(tok);
    snprintf(k->shown, sizeof(k->shown), "%.*s", (int)(n && tok[n - 1] == '.' ? n - 1 : n), tok);
    snprintf(k->name, sizeof(k->name), "%s%s", tok, n && tok[n - 1] == '.' ? "" : ".");
    ldns_rdf *name = ldns_dname_new_frm_str(k->name);
    ldns_rdf_deep_free(name);
    if (!name || n >= sizeof(k->name) - 1) {
        snprintf(why, len, "the key name \"%.60s\" is not a DNS name", tok);
        return -EINVAL;
    }
    return key_body(&l, k, why, len);
}

/* Whether ldns signs with this key: the secret is base64, and ldns knows the algorithm. */
static int key_probe(struct dkey *k, char *why, size_t len)
{
    ldns_rdf *b64 = NULL;
    if (ldns_str2rdf_b64(&b64, k->secret) != LDNS_STATUS_OK || !b64) {
        snprintf(why, len, "the secret of key \"%.60s\" is not base64", k->shown);
        return -EINVAL;
    }
    ldns_rdf_deep_free(b64);
    ldns_pkt *p =
        ldns_pkt_query_new(ldns_dname_new_frm_str("probe."), LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN, 0);
    ldns_status st = p ? ldns_pkt_tsig_sign(p, k->name, k->secret, FUDGE, k->wire_alg, NULL)
                       : LDNS_STATUS_MEM_ERR;
    ldns_pkt_free(p);
    if (st == LDNS_STATUS_OK)
        return 0;
    if (st == LDNS_STATUS_CRYPTO_UNKNOWN_ALGO)
        snprintf(why, len,
                 "ldns %s cannot sign with %s: make the key with tsig-keygen -a hmac-sha256 "
                 "(or hmac-sha512, hmac-sha1)",
                 LDNS_VERSION, k->alg);
    else
        snprintf(why, len, "ldns cannot sign with key \"%.60s\": %s", k->shown,
                 ldns_get_errorstr_by_id(st));
    return -EINVAL;
}

static int key_load(struct dkey *k, const char *path, char *err, size_t errlen)
{
    char *text = calloc(1, KEYFILE_MAX + 1), why[300] = "";
    FILE *f = text ? fopen(path, "r") : NULL;
    int rc = -ENOMEM;
    if (!text)
        goto done;
    if (!f) {
        rc = -errno;
        snprintf(why, sizeof(why), "cannot read it: %s", strerror(errno));
        goto done;
    }
    size_t n = fread(text, 1, KEYFILE_MAX + 1, f);
    if (ferror(f) || n > KEYFILE_MAX || memchr(text, '\0', n)) {
        rc = -EINVAL;
        snprintf(why, sizeof(why), "%s", ferror(f) ? strerror(errno) : "not a BIND key file");
        goto done;
    }
    text[n] = '\0';
    rc = key_parse(k, text, why, sizeof(why));
    if (rc == 0)
        rc = key_probe(k, why, sizeof(why));
done:
    if (rc)
        snprintf(err, errlen, "-tsig %s: %s", path, why[0] ? why : strerror(-rc));
    if (f)
        fclose(f);
    if (text)
        explicit_bzero(text, KEYFILE_MAX);
    free(text);
    return rc;
}

/* ---- The server, the zone, the addresses ---- */

/* SERVER, SERVER:PORT, [V6]:PORT or a bare IPv6 literal, into host and port. */
static int server_split(const char *s, char *host, size_t len, unsigned *port)
{
    const char *end = s + strlen(s), *colon = strrchr(s, ':'), *p = NULL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || (close[1] && close[1] != ':'))
            return -EINVAL;
        p = close[1] ? close + 2 : NULL;
        s++, end = close;
    } else if (colon && strchr(s, ':') == colon) {
        p = colon + 1, end = colon;
    }
    *port = 53;
    if (p) {
        char *e;
        long v = strtol(p, &e, 10);
        if (!*p || *e || v < 1 || v > 65535)
            return -EINVAL;
        *port = (unsigned)v;
    }
    if (end == s || (size_t)(end - s) >= len)
        return -EINVAL;
    memcpy(host, s, (size_t)(end - s));
    host[end - s] = '\0';
    return 0;
}

/* An address literal as it is, else a name through getaddrinfo (at start only). */
static int server_resolve(struct rdb_dnsup *u, const char *s, char *err, size_t errlen)
{
    if (server_split(s, u->server, sizeof(u->server), &u->port)) {
        snprintf(err, errlen, "-dns-update %.200s: expected SERVER, SERVER:PORT or [IPV6]:PORT", s);
        return -EINVAL;
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", u->port);
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(u->server, port, &hints, &ai);
    if (rc == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
        rc = getaddrinfo(u->server, port, &hints, &ai);
    }
    if (rc || !ai) {
        snprintf(err, errlen, "-dns-update %.200s: cannot resolve %.200s: %s", s, u->server,
                 gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    memcpy(&u->sa, ai->ai_addr, ai->ai_addrlen);
    u->salen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static int zone_set(struct rdb_dnsup *u, const char *zone, char *err, size_t errlen)
{
    size_t n = strlen(zone);
    while (n && zone[n - 1] == '.')
        n--;
    ldns_rdf *d = NULL;
    if (n && n < sizeof(u->zone) - 64) {
        snprintf(u->zone, sizeof(u->zone), "%.*s", (int)n, zone);
        d = ldns_dname_new_frm_str(u->zone);
    }
    ldns_rdf_deep_free(d);
    if (!d) {
        snprintf(err, errlen, "-zone %.200s: not a DNS zone name", zone);
        return -EINVAL;
    }
    return 0;
}

static bool addr_push(struct rdb_dnsup *u, int af, const void *bin)
{
    char text[INET6_ADDRSTRLEN];
    if (u->naddrs == ADDRS_MAX || !inet_ntop(af, bin, text, sizeof(text)))
        return false;
    for (int i = 0; i < u->naddrs; i++)
        if (strcmp(u->addr[i], text) == 0)
            return true;
    u->af[u->naddrs] = af;
    snprintf(u->addr[u->naddrs++], INET6_ADDRSTRLEN, "%s", text);
    return true;
}

/* The host's addresses that others may reach: up, not loopback, not link-local. */
static void addrs_own(struct rdb_dnsup *u)
{
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) < 0)
        return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            struct in_addr a = ((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr;
            if ((ntohl(a.s_addr) >> 16) != 0xa9fe && (ntohl(a.s_addr) >> 24) != 127)
                addr_push(u, AF_INET, &a);
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            struct in6_addr a = ((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr;
            if (!IN6_IS_ADDR_LINKLOCAL(&a) && !IN6_IS_ADDR_LOOPBACK(&a))
                addr_push(u, AF_INET6, &a);
        }
    }
    freeifaddrs(ifs);
}

static int addrs_set(struct rdb_dnsup *u, const struct rdb_config *cfg, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->ndns_addrs && i < ADDRS_MAX; i++) {
        uint8_t bin[16];
        int af = inet_pton(AF_INET, cfg->dns_addrs[i], bin) == 1    ? AF_INET
                 : inet_pton(AF_INET6, cfg->dns_addrs[i], bin) == 1 ? AF_INET6
                                                                    : 0;
        if (!af || !addr_push(u, af, bin)) {
            snprintf(err, errlen, "-dns-address %.100s: not an IPv4 or IPv6 address",
                     cfg->dns_addrs[i]);
            return -EINVAL;
        }
    }
    if (cfg->ndns_addrs == 0)
        addrs_own(u);
    if (u->naddrs == 0) {
        snprintf(err, errlen,
                 "-dns-update: this host has no address but loopback ones to publish in %s: "
                 "give -dns-address",
                 u->zone);
        return -EADDRNOTAVAIL;
    }
    return 0;
}

/* Everything but the records themselves, from the settings. */
static int dns_setup(struct rdb_dnsup *u, const struct rdb_config *cfg, char *err, size_t errlen)
{
    if (!cfg->dns_server || !cfg->dns_zone || !cfg->dns_zone[0] || !cfg->dns_tsig) {
        snprintf(err, errlen, "-dns-update needs -zone ZONE and -tsig KEYFILE");
        return -EINVAL;
    }
    u->ttl = cfg->dns_ttl ? cfg->dns_ttl : RDB_DNS_TTL;
    if (u->ttl < RDB_DNS_TTL_MIN || u->ttl > RDB_DNS_TTL_MAX) {
        snprintf(err, errlen, "-dns-ttl %d: seconds from %d to %d", u->ttl, RDB_DNS_TTL_MIN,
                 RDB_DNS_TTL_MAX);
        return -EINVAL;
    }
    int rc = zone_set(u, cfg->dns_zone, err, errlen);
    if (rc == 0)
        rc = key_load(&u->key, cfg->dns_tsig, err, errlen);
    if (rc == 0)
        rc = server_resolve(u, cfg->dns_server, err, errlen);
    if (rc == 0)
        rc = addrs_set(u, cfg, err, errlen);
    return rc;
}

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
    bool ok = ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL) == LDNS_STATUS_OK;
    ldns_rr_free(rr);
    return ok;
}

static int records_make(struct rdb_dnsup *u, const struct rdb_service_info *si, char *err,
                        size_t errlen)
{
    char label[260], host[64], txt[RR_MAX - 400] = "", one[300];
    if (host_label(host, sizeof(host), si->host)) {
        snprintf(err, errlen, "-dns-update: the host name \"%.60s\" makes no DNS label", si->host);
        return -EINVAL;
    }
    label_escape(label, sizeof(label), si->instance);
    snprintf(u->inst, sizeof(u->inst), "%s.%s.%s.", label, RDB_SERVICE, u->zone);
    snprintf(u->shown, sizeof(u->shown), "%s", si->instance);
    snprintf(u->srv, RR_MAX, "%s %d IN SRV 0 0 %u %s.%s.", u->inst, u->ttl, si->port, host,
             u->zone);
    for (int i = 0; i < si->ntxt; i++) {
        txt_quote(one, sizeof(one), si->txt[i]);
        snprintf(txt + strlen(txt), sizeof(txt) - strlen(txt), " %s", one);
    }
    snprintf(u->txt, RR_MAX, "%s %d IN TXT%s", u->inst, u->ttl, txt);
    snprintf(u->shared[0], RR_MAX, "%s.%s. %d IN PTR %s", RDB_SERVICE, u->zone, u->ttl, u->inst);
    for (int i = 0; i < u->naddrs; i++)
        snprintf(u->shared[1 + i], RR_MAX, "%s.%s. %d IN %s %s", host, u->zone, u->ttl,
                 u->af[i] == AF_INET ? "A" : "AAAA", u->addr[i]);
    u->nshared = 1 + u->naddrs;
    bool ok = rr_parses(u->srv) && rr_parses(u->txt);
    for (int i = 0; ok && i < u->nshared; i++)
        ok = rr_parses(u->shared[i]);
    if (!ok) {
        snprintf(err, errlen, "-zone %s: the names of the records would be too long", u->zone);
        return -EINVAL;
    }
    return 0;
}

/* ---- The update messages ---- */

static bool push(ldns_rr_list *l, ldns_rr *rr)
{
    if (rr && ldns_rr_list_push_rr(l, rr))
        return true;
    ldns_rr_free(rr);
    return false;
}

/* A record to add, or (del) that exact record to delete (class NONE, RFC 2136 2.5.4). */
static ldns_rr *rr_new(const char *text, bool del)
{
    ldns_rr *rr = NULL;
    if (ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL) != LDNS_STATUS_OK)
        return NULL;
    if (del) {
        ldns_rr_set_class(rr, LDNS_RR_CLASS_NONE);
        ldns_rr_set_ttl(rr, 0);
    }
    return rr;
}

/* Deletes the RRset of `type` at `name` (class ANY, no rdata, RFC 2136 2.5.2). */
static ldns_rr *rrset_delete(const char *name, ldns_rr_type type)
{
    ldns_rr *rr = ldns_rr_new();
    ldns_rdf *owner = rr ? ldns_dname_new_frm_str(name) : NULL;
    if (!owner) {
        ldns_rr_free(rr);
        return NULL;
    }
    ldns_rr_set_owner(rr, owner);
    ldns_rr_set_type(rr, type);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_ANY);
    ldns_rr_set_ttl(rr, 0);
    return rr;
}

/* Our SRV and TXT RRsets replaced (or deleted), our PTR and addresses added (or deleted). */
static ldns_pkt *update_new(const struct rdb_dnsup *u, bool withdraw)
{
    ldns_rr_list *up = ldns_rr_list_new();
    bool ok = up && push(up, rrset_delete(u->inst, LDNS_RR_TYPE_SRV)) &&
              push(up, rrset_delete(u->inst, LDNS_RR_TYPE_TXT));
    if (!withdraw)
        ok = ok && push(up, rr_new(u->srv, false)) && push(up, rr_new(u->txt, false));
    for (int i = 0; ok && i < u->nshared; i++)
        ok = push(up, rr_new(u->shared[i], withdraw));
    ldns_pkt *p =
        ok ? ldns_update_pkt_new(ldns_dname_new_frm_str(u->zone), LDNS_RR_CLASS_IN, NULL, up, NULL)
           : NULL;
    ldns_rr_list_deep_free(up);
    return p;
}

/* The signed request on the wire, and its MAC for checking the reply. */
static int request_make(const struct rdb_dnsup *u, struct xfer *x)
{
    ldns_pkt *p = update_new(u, x->withdraw);
    int rc = -ENOMEM;
    if (!p)
        goto done;
    ldns_pkt_set_random_id(p);
    ldns_pkt_set_rd(p, false);
    rc = -EINVAL;
    if (ldns_pkt_tsig_sign(p, u->key.name, u->key.secret, FUDGE, u->key.wire_alg, NULL) !=
        LDNS_STATUS_OK)
        goto done;
    rc = -ENOMEM;
    if (ldns_pkt2wire(&x->wire, p, &x->len) != LDNS_STATUS_OK)
        goto done;
    x->mac = ldns_rdf_clone(ldns_rr_rdf(ldns_pkt_tsig(p), 3));
    x->id = ldns_pkt_id(p);
    rc = x->mac ? 0 : -ENOMEM;
done:
    ldns_pkt_free(p);
    return rc;
}

/* ---- The reply ---- */

static const char *rcode_name(unsigned rcode)
{
    ldns_lookup_table *t = ldns_lookup_by_id(ldns_rcodes, (int)rcode);
    return t ? t->name : "an unknown rcode";
}

static unsigned tsig_error(const ldns_rr *t)
{
    return t && ldns_rr_rd_count(t) > 6 ? ldns_rdf2native_int16(ldns_rr_rdf(t, 5)) : 0;
}

static const char *tsig_error_name(unsigned e)
{
    return e == 16 ? "BADSIG" : e == 17 ? "BADKEY" : e == 18 ? "BADTIME" : "a TSIG error";
}

/* Whether the reply is signed with our key, over our request's MAC. */
static bool reply_signed(const struct rdb_dnsup *u, ldns_pkt *p, const uint8_t *buf, size_t n)
{
    ldns_rr *t = ldns_pkt_tsig(p);
    if (!t)
        return false;
    bool ok = ldns_pkt_tsig_verify(p, buf, n, u->key.name, u->key.secret, u->x.mac);
    if (!ldns_pkt_tsig(p))
        ldns_rr_free(t); /* ldns leaves it out of the packet when it fails half-way */
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

enum reply { REPLY_IGNORED, REPLY_DONE, REPLY_TRUNCATED };

/* Checks a reply: its id, its TSIG, its rcode; REPLY_DONE with the outcome in *rc and msg. */
static enum reply reply_check(struct rdb_dnsup *u, const uint8_t *buf, size_t n, int *rc, char *msg,
                              size_t len)
{
    ldns_pkt *p = NULL;
    enum reply r = REPLY_IGNORED;
    if (ldns_wire2pkt(&p, buf, n) != LDNS_STATUS_OK || ldns_pkt_id(p) != u->x.id ||
        !ldns_pkt_qr(p) || ldns_pkt_get_opcode(p) != LDNS_PACKET_UPDATE)
        goto done;
    if (ldns_pkt_tc(p)) {
        r = REPLY_TRUNCATED;
        goto done;
    }
    unsigned rcode = ldns_pkt_get_rcode(p), terr = tsig_error(ldns_pkt_tsig(p));
    r = REPLY_DONE;
    *rc = -EACCES;
    if (terr) /* unsigned, as RFC 8945 wants it */
        snprintf(msg, len,
                 "the DNS server %s refused the update of %s: the TSIG key %s is not accepted "
                 "(%s / %s%s)",
                 u->server, u->zone, u->key.shown, rcode_name(rcode), tsig_error_name(terr),
                 terr == 18 ? ": the clocks of the two hosts differ" : "");
    else if (!reply_signed(u, p, buf, n))
        r = REPLY_IGNORED, snprintf(u->x.note, sizeof(u->x.note),
                                    "; a reply (%s) not signed with the key %s was ignored",
                                    rcode_name(rcode), u->key.shown);
    else if (rcode != LDNS_RCODE_NOERROR)
        rcode_explain(u, rcode, msg, len), *rc = -EPERM;
    else
        *rc = 0;
done:
    ldns_pkt_free(p);
    return r;
}

/* ---- One update in flight ---- */

static void xfer_close(struct xfer *x)
{
    if (x->ev)
        event_free(x->ev);
    x->ev = NULL;
    if (x->fd >= 0)
        close(x->fd);
    x->fd = -1;
}

static void xfer_clear(struct xfer *x)
{
    xfer_close(x);
    if (x->timer)
        event_free(x->timer);
    x->timer = NULL;
    LDNS_FREE(x->wire);
    x->wire = NULL;
    ldns_rdf_deep_free(x->mac);
    x->mac = NULL;
    free(x->in);
    x->in = NULL;
    x->active = false;
}

static void published(struct rdb_dnsup *u, int rc, const char *msg);

static void finish(struct rdb_dnsup *u, int rc, const char *msg)
{
    bool withdraw = u->x.withdraw;
    xfer_clear(&u->x);
    if (!withdraw) {
        published(u, rc, msg);
        return;
    }
    u->withdraw_rc = rc;
    if (rc == 0)
        logf_(u, LOG_INFO, "site DNS: removed \"%s\" from %s", u->shown, u->zone);
    else
        logf_(u, LOG_WARNING, "site DNS: the records stay until their TTL (%d s) ends: %s", u->ttl,
              msg);
}

static void finish_errno(struct rdb_dnsup *u, const char *what, int e)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s %s port %u%s (%s)", what, u->server, u->port,
             u->x.tcp ? " over TCP" : "", strerror(e));
    finish(u, -e, msg);
}

static void on_io(evutil_socket_t fd, short what, void *arg);

static int xfer_arm(struct xfer *x, void *arg, short what)
{
    if (x->ev)
        event_free(x->ev);
    x->ev = event_new(x->base, x->fd, what | EV_PERSIST, on_io, arg);
    return x->ev && event_add(x->ev, NULL) == 0 ? 0 : -ENOMEM;
}

/* Opens the socket and sends (UDP) or starts connecting (TCP); the timer runs from now. */
static int xfer_connect(struct rdb_dnsup *u)
{
    struct xfer *x = &u->x;
    int type = (x->tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
    xfer_close(x);
    x->outoff = x->inlen = 0;
    x->fd = socket(u->sa.ss_family, type, 0);
    if (x->fd < 0 ||
        (connect(x->fd, (struct sockaddr *)&u->sa, u->salen) < 0 && errno != EINPROGRESS))
        return -errno;
    if (!x->tcp && send(x->fd, x->wire, x->len, 0) < 0)
        return -errno;
    struct timeval tv = {.tv_sec = x->try_ms / 1000, .tv_usec = (x->try_ms % 1000) * 1000};
    if (xfer_arm(x, u, x->tcp ? EV_WRITE : EV_READ) || event_add(x->timer, &tv))
        return -ENOMEM;
    return 0;
}

static void udp_read(struct rdb_dnsup *u)
{
    struct xfer *x = &u->x;
    char msg[512];
    int rc = 0;
    for (;;) {
        ssize_t n = recv(x->fd, x->in, IN_MAX, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0)
            return finish_errno(u, "no DNS server answers on", errno);
        enum reply r = reply_check(u, x->in, (size_t)n, &rc, msg, sizeof(msg));
        if (r == REPLY_DONE)
            return finish(u, rc, msg);
        if (r == REPLY_TRUNCATED) {
            x->tcp = true;
            if ((rc = xfer_connect(u)) != 0)
                finish_errno(u, "cannot send the update to the DNS server", -rc);
            return;
        }
    }
}

/* Writes the length-prefixed request once connected. */
static void tcp_write(struct rdb_dnsup *u)
{
    struct xfer *x = &u->x;
    int e = 0;
    socklen_t elen = sizeof(e);
    if (x->outoff == 0 && (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0 || e))
        return finish_errno(u, "cannot connect to the DNS server", e ? e : errno);
    uint8_t hdr[2] = {(uint8_t)(x->len >> 8), (uint8_t)x->len};
    size_t off = x->outoff;
    struct iovec iov[2] = {{hdr + (off < 2 ? off : 2), off < 2 ? 2 - off : 0},
                           {x->wire + (off > 2 ? off - 2 : 0), x->len - (off > 2 ? off - 2 : 0)}};
    ssize_t n = writev(x->fd, iov, 2);
    if (n < 0 && errno != EAGAIN)
        return finish_errno(u, "cannot send the update to the DNS server", errno);
    x->outoff += n > 0 ? (size_t)n : 0;
    if (x->outoff == x->len + 2 && xfer_arm(x, u, EV_READ))
        finish_errno(u, "cannot wait for the DNS server", ENOMEM);
}

static void tcp_read(struct rdb_dnsup *u)
{
    struct xfer *x = &u->x;
    ssize_t n = read(x->fd, x->in + x->inlen, IN_MAX - x->inlen);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        return finish_errno(u, "no reply from the DNS server", n ? errno : ECONNRESET);
    x->inlen += (size_t)n;
    size_t need = x->inlen >= 2 ? 2 + ((size_t)x->in[0] << 8 | x->in[1]) : IN_MAX;
    if (x->inlen < need)
        return;
    char msg[512];
    int rc = 0;
    if (reply_check(u, x->in + 2, need - 2, &rc, msg, sizeof(msg)) == REPLY_DONE)
        return finish(u, rc, msg);
    finish_errno(u, "no valid reply from the DNS server", EPROTO);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct rdb_dnsup *u = arg;
    (void)fd;
    if (!u->x.tcp)
        udp_read(u);
    else if (what & EV_WRITE)
        tcp_write(u);
    else
        tcp_read(u);
}

static void on_try_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct rdb_dnsup *u = arg;
    struct xfer *x = &u->x;
    (void)fd, (void)what;
    struct timeval tv = {.tv_sec = x->try_ms / 1000, .tv_usec = (x->try_ms % 1000) * 1000};
    if (--x->tries > 0) { /* UDP: the same request again, on the same socket */
        int rc = x->tcp ? xfer_connect(u) : 0;
        if (!x->tcp && send(x->fd, x->wire, x->len, 0) < 0)
            rc = -errno;
        else if (!x->tcp && event_add(x->timer, &tv))
            rc = -ENOMEM;
        if (rc)
            finish_errno(u, "cannot send the update to the DNS server", -rc);
        return;
    }
    char msg[512];
    snprintf(msg, sizeof(msg),
             "no answer from the DNS server %s port %u%s within %d s (update of %s)%s", u->server,
             u->port, x->tcp ? " over TCP" : "", (x->total_ms + 999) / 1000, u->zone, x->note);
    finish(u, -ETIMEDOUT, msg);
}

static int xfer_start(struct rdb_dnsup *u, struct event_base *base, bool withdraw, int try_ms,
                      int tries)
{
    struct xfer *x = &u->x;
    xfer_clear(x);
    *x = (struct xfer){.base = base,
                       .withdraw = withdraw,
                       .fd = -1,
                       .tries = tries,
                       .try_ms = try_ms,
                       .total_ms = try_ms * tries,
                       .active = true};
    x->in = malloc(IN_MAX);
    x->timer = evtimer_new(base, on_try_timeout, u);
    int rc = x->in && x->timer ? request_make(u, x) : -ENOMEM;
    if (rc == 0)
        rc = xfer_connect(u);
    if (rc)
        xfer_clear(x);
    return rc;
}

/* ---- Publishing ---- */

static void published(struct rdb_dnsup *u, int rc, const char *msg)
{
    if (rc == 0) {
        if (!u->published || u->failing)
            logf_(u, LOG_INFO,
                  "site DNS: published \"%s\" in %s on the DNS server %s port %u (%d address%s, "
                  "TTL %d s)",
                  u->shown, u->zone, u->server, u->port, u->naddrs, u->naddrs == 1 ? "" : "es",
                  u->ttl);
        u->published = true;
        u->failing = false;
        u->last[0] = '\0';
        return;
    }
    if (strcmp(msg, u->last) != 0)
        logf_(u, LOG_WARNING, "site DNS: %s; trying again every %d s", msg,
              u->ttl / 2 > 0 ? u->ttl / 2 : 1);
    snprintf(u->last, sizeof(u->last), "%s", msg);
    u->failing = true;
}

static void publish(struct rdb_dnsup *u)
{
    if (u->x.active || u->withdrawn)
        return; /* the update in flight does the same */
    int rc = xfer_start(u, u->base, false, TRY_MS, TRIES);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof(msg), "cannot send the update of %s to %s port %u: %s", u->zone,
                 u->server, u->port, strerror(-rc));
        published(u, rc, msg);
    }
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    publish(arg);
}

static void dnsup_free_(struct rdb_dnsup *u)
{
    xfer_clear(&u->x);
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
    int rc = dns_setup(u, cfg, err, errlen);
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
    int rc = dns_setup(u, cfg, err, errlen);
    if (rc == 0 && (rc = rdb_broker_service(b, &si)) != 0)
        snprintf(err, errlen,
                 "-dns-update: no query endpoint to publish: it takes a -listen tcp:port=N "
                 "without a password");
    if (rc == 0)
        rc = records_make(u, &si, err, errlen);
    u->refresh = rc == 0 ? event_new(base, -1, EV_PERSIST, on_refresh, u) : NULL;
    struct timeval tv = {.tv_sec = u->ttl / 2 > 0 ? u->ttl / 2 : 1};
    if (rc == 0 && (!u->refresh || event_add(u->refresh, &tv)))
        rc = -ENOMEM, snprintf(err, errlen, "-dns-update: out of memory");
    if (rc) {
        dnsup_free_(u);
        return rc;
    }
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
    xfer_clear(&u->x);
    if (!u->published)
        return 0; /* nothing of ours is there, or nothing we may change */
    struct event_base *base = event_base_new();
    if (!base)
        return -ENOMEM;
    int tries = timeout_ms / WITHDRAW_TRY_MS > 0 ? timeout_ms / WITHDRAW_TRY_MS : 1;
    int try_ms = timeout_ms < WITHDRAW_TRY_MS ? timeout_ms : WITHDRAW_TRY_MS;
    u->withdraw_rc = xfer_start(u, base, true, try_ms > 0 ? try_ms : 1, tries);
    if (u->withdraw_rc == 0)
        event_base_dispatch(base); /* until finish() leaves no event */
    xfer_clear(&u->x);
    event_base_free(base);
    return u->withdraw_rc;
}

void rdb_dnsup_free(struct rdb_dnsup *u)
{
    if (u)
        dnsup_free_(u);
}
