/* -dns-update's settings: the server, the zone, the key and the addresses to publish. */
#include "dnsupdate_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* An address literal as it is, else a name through c-ares (at start only). */
static int server_resolve(struct rdb_dnsup *u, const char *s, char *err, size_t errlen)
{
    if (server_split(s, u->server, sizeof(u->server), &u->port)) {
        snprintf(err, errlen, "-dns-update %.200s: expected SERVER, SERVER:PORT or [IPV6]:PORT", s);
        return -EINVAL;
    }
    struct rdt_addrs a;
    char why[RDT_ERR_MAX];
    int rc = rdt_resolve_addrs(u->server, false, 5000, &a, why, sizeof(why));
    if (rc <= 0 || rdt_sockaddr_of(a.addr[0], u->port, &u->sa, &u->salen) != 0) {
        snprintf(err, errlen, "-dns-update %.200s: cannot resolve %.200s", s,
                 rc < 0 ? why : u->server);
        return -EHOSTUNREACH;
    }
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
        d = LDNS(ldns_dname_new_frm_str)(u->zone);
    }
    LDNS(ldns_rdf_deep_free)(d);
    if (!d) {
        snprintf(err, errlen, "-zone %.200s: not a DNS zone name", zone);
        return -EINVAL;
    }
    return 0;
}

static bool addr_push(struct rdb_dnsup *u, int af, const void *bin)
{
    char text[INET6_ADDRSTRLEN];
    if (u->naddrs == RDB_DNS_ADDRS_MAX || !inet_ntop(af, bin, text, sizeof(text)))
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
    for (int i = 0; i < cfg->ndns_addrs && i < RDB_DNS_ADDRS_MAX; i++) {
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

int rdb_dnsup_setup(struct rdb_dnsup *u, const struct rdb_config *cfg, char *err, size_t errlen)
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
    int rc = rdb_ldns_load(err, errlen); /* only now: a broker without -dns-update never loads it */
    if (rc == 0)
        rc = zone_set(u, cfg->dns_zone, err, errlen);
    if (rc == 0)
        rc = rdb_tsigkey_load(&u->key, cfg->dns_tsig, err, errlen);
    if (rc == 0)
        rc = server_resolve(u, cfg->dns_server, err, errlen);
    if (rc == 0)
        rc = addrs_set(u, cfg, err, errlen);
    return rc;
}
