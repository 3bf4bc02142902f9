/* rdbroker: the per-host registry of rdq servers. */
#include "broker.h"

#include <errno.h>
#include <event2/event.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define CONFIG_DEFAULT "/etc/rdq/rdbroker.conf"

struct opts {
    struct rdb_config cfg;
    char sock[256];
    char listen[8][RDT_STRING_MAX];
    const char *user;
    bool use_syslog;
    char user_buf[64];
    char group_buf[64];
    char dns_server[256];
    char dns_zone[256];
    char dns_tsig[1024];
    char dns_addrs[8][64];
};

static void usage(FILE *f)
{
    fprintf(f,
            "rdbroker: the per-host registry of rdq servers, which answers rdq -QR (the listing\n"
            "of cdb -QR of Microsoft's Debugging Tools for Windows)\n"
            "Usage: rdbroker [-socket PATH] [-listen TRANSPORT]... [-group NAME] [-user NAME]\n"
            "                [-idle MS] [-relay] [-no-dnssd] [-publish-servers] [-syslog]\n"
            "                [-config FILE] [-dns-update SERVER[:PORT] -zone ZONE -tsig KEYFILE\n"
            "                 [-dns-address A]... [-dns-ttl S]]\n"
            "  -socket PATH     registration and local query socket (default $RDQ_BROKER_SOCK,\n"
            "                   else %s)\n"
            "  -listen T        a query endpoint, repeatable (default tcp:port=%d);\n"
            "                   tcp:port=N[:M], npipe:pipe=NAME, ssl:... or spipe:..., with\n"
            "                   password= if wanted\n"
            "  -group NAME      members of this group register discoverably (root always does)\n"
            "  -user NAME       the user to run as after binding, when started as root\n"
            "                   (default nobody)\n"
            "  -idle MS         close a connection that holds no registration and sends nothing,\n"
            "                   or does not read its answers, after MS milliseconds\n"
            "                   (100 to 3600000; default %d)\n"
            "  -relay           relay clients of other hosts to this host's pipes\n"
            "                   (npipe:server=ThisHost,pipe=NAME)\n",
            RDB_DEFAULT_SOCK, RDB_DEFAULT_PORT, RDB_IDLE_MS);
    fprintf(f,
            "  -no-dnssd        do not publish the query endpoint on the LAN\n"
            "                   (DNS-SD %s through avahi-daemon; on by default)\n"
            "  -publish-servers publish each listed server on the LAN too (%s)\n"
            "  -syslog          log to syslog instead of stderr\n"
            "  -dns-update S    keep this broker's DNS-SD records (PTR, SRV, TXT under\n"
            "                   _rdq._tcp.ZONE, A/AAAA of the host) in the site's DNS on server S\n"
            "                   (an address, [v6]:port or a name; port 53) by dynamic updates\n"
            "                   signed with TSIG; removed again on exit. Needs -zone and -tsig\n"
            "  -zone ZONE       the DNS zone to publish in (required with -dns-update)\n"
            "  -tsig KEYFILE    the TSIG key, in BIND's format as tsig-keygen writes it\n"
            "                   (required with -dns-update)\n"
            "  -dns-address A   the host's address to publish, repeatable (default: its\n"
            "                   addresses but loopback and link-local ones)\n"
            "  -dns-ttl S       the records' TTL in seconds, %d to %d (default %d); they are\n"
            "                   sent again every S/2 seconds\n"
            "  -config FILE     read these settings from FILE, one \"key value\" a line\n"
            "                   (socket, listen, group, user, idle, relay, dnssd,\n"
            "                   publish-servers, syslog, dns-update, zone, tsig, dns-address,\n"
            "                   dns-ttl); default %s if present\n"
            "  -?, --help       this help\n",
            RDB_SERVICE, RDB_SERVER_SERVICE, RDB_DNS_TTL_MIN, RDB_DNS_TTL_MAX, RDB_DNS_TTL,
            CONFIG_DEFAULT);
}

static void log_msg(int prio, const char *msg, void *arg)
{
    const struct opts *o = arg;
    if (o->use_syslog) {
        syslog(prio, "%s", msg);
        return;
    }
    char ts[32];
    time_t now = time(NULL);
    strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&now));
    fprintf(stderr, "rdbroker %s %s\n", ts, msg);
}

/* A setting of the site DNS (dns-update, zone, tsig, dns-address, dns-ttl). */
static int set_dns_opt(struct opts *o, const char *key, const char *val, const char *where)
{
    if (!val) {
        fprintf(stderr, "rdbroker: %s: %s needs a value: try rdbroker -?\n", where, key);
        return -1;
    }
    char *end;
    long ttl;
    if (strcmp(key, "dns-update") == 0) {
        snprintf(o->dns_server, sizeof(o->dns_server), "%s", val);
        o->cfg.dns_server = o->dns_server;
    } else if (strcmp(key, "zone") == 0) {
        snprintf(o->dns_zone, sizeof(o->dns_zone), "%s", val);
        o->cfg.dns_zone = o->dns_zone;
    } else if (strcmp(key, "tsig") == 0) {
        snprintf(o->dns_tsig, sizeof(o->dns_tsig), "%s", val);
        o->cfg.dns_tsig = o->dns_tsig;
    } else if (strcmp(key, "dns-address") == 0) {
        if (o->cfg.ndns_addrs == 8) {
            fprintf(stderr, "rdbroker: %s: at most 8 addresses\n", where);
            return -1;
        }
        snprintf(o->dns_addrs[o->cfg.ndns_addrs], sizeof(o->dns_addrs[0]), "%s", val);
        o->cfg.dns_addrs[o->cfg.ndns_addrs] = o->dns_addrs[o->cfg.ndns_addrs];
        o->cfg.ndns_addrs++;
    } else if (strcmp(key, "dns-ttl") == 0 && (ttl = strtol(val, &end, 10), !*end) &&
               ttl >= RDB_DNS_TTL_MIN && ttl <= RDB_DNS_TTL_MAX) {
        o->cfg.dns_ttl = (int)ttl;
    } else {
        if (strcmp(key, "dns-ttl") == 0)
            fprintf(stderr, "rdbroker: %s: dns-ttl \"%s\": seconds from %d to %d\n", where, val,
                    RDB_DNS_TTL_MIN, RDB_DNS_TTL_MAX);
        else
            fprintf(stderr, "rdbroker: %s: unknown setting \"%s\": try rdbroker -?\n", where, key);
        return -1;
    }
    return 0;
}

/* The site DNS settings go together: -zone and -tsig with -dns-update, and a key that reads. */
static int check_dns(const struct opts *o)
{
    const struct rdb_config *c = &o->cfg;
    char err[RDT_ERR_MAX];
    if (!c->dns_server && (c->dns_zone || c->dns_tsig || c->ndns_addrs || c->dns_ttl)) {
        fprintf(stderr, "rdbroker: -zone, -tsig, -dns-address and -dns-ttl go with "
                        "-dns-update SERVER: try rdbroker -?\n");
        return -1;
    }
    if (c->dns_server && (!c->dns_zone || !c->dns_tsig)) {
        fprintf(stderr, "rdbroker: -dns-update needs -zone ZONE and -tsig KEYFILE: try "
                        "rdbroker -?\n");
        return -1;
    }
    if (c->dns_server && rdb_dns_check(c, err, sizeof(err)) != 0) {
        fprintf(stderr, "rdbroker: %s\n", err);
        return -1;
    }
    return 0;
}

/* One setting, from the command line or the config file. */
static int set_opt(struct opts *o, const char *key, const char *val, const char *where)
{
    if (strcmp(key, "socket") == 0 && val) {
        snprintf(o->sock, sizeof(o->sock), "%s", val);
        o->cfg.sock_path = o->sock;
    } else if (strcmp(key, "listen") == 0 && val) {
        if (o->cfg.nlisten == 8) {
            fprintf(stderr, "rdbroker: %s: at most 8 query endpoints\n", where);
            return -1;
        }
        snprintf(o->listen[o->cfg.nlisten], RDT_STRING_MAX, "%s", val);
        o->cfg.listen[o->cfg.nlisten] = o->listen[o->cfg.nlisten];
        o->cfg.nlisten++;
    } else if (strcmp(key, "group") == 0 && val) {
        struct group *g = getgrnam(val);
        if (!g) {
            fprintf(stderr, "rdbroker: %s: no group named \"%s\"\n", where, val);
            return -1;
        }
        o->cfg.group = g->gr_gid;
        o->cfg.have_group = true;
    } else if (strcmp(key, "user") == 0 && val) {
        snprintf(o->user_buf, sizeof(o->user_buf), "%s", val);
        o->user = o->user_buf;
    } else if (strcmp(key, "idle") == 0 && val) {
        char *end;
        long ms = strtol(val, &end, 10);
        if (*end || ms < 100 || ms > 3600000) {
            fprintf(stderr, "rdbroker: %s: idle \"%s\": milliseconds from 100 to 3600000\n", where,
                    val);
            return -1;
        }
        o->cfg.idle_ms = (int)ms;
    } else if (strncmp(key, "dns-", 4) == 0 || strcmp(key, "zone") == 0 ||
               strcmp(key, "tsig") == 0) {
        return set_dns_opt(o, key, val, where);
    } else if (strcmp(key, "syslog") == 0) {
        o->use_syslog = !val || strcmp(val, "no") != 0;
    } else if (strcmp(key, "relay") == 0) {
        o->cfg.relay = !val || strcmp(val, "no") != 0;
    } else if (strcmp(key, "dnssd") == 0) {
        o->cfg.no_dnssd = val && strcmp(val, "no") == 0;
    } else if (strcmp(key, "publish-servers") == 0) {
        o->cfg.publish_servers = !val || strcmp(val, "no") != 0;
    } else {
        fprintf(stderr, "rdbroker: %s: unknown setting \"%s\"%s: try rdbroker -?\n", where, key,
                val ? "" : " (or a missing value)");
        return -1;
    }
    return 0;
}

static int read_config(struct opts *o, const char *path, bool must_exist)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!must_exist)
            return 0;
        fprintf(stderr, "rdbroker: -config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[2048], where[300];
    int rc = 0;
    for (int n = 1; rc == 0 && fgets(line, sizeof(line), f); n++) {
        char *key = strtok(line, " \t\r\n");
        char *val = key ? strtok(NULL, "\r\n") : NULL;
        while (val && (*val == ' ' || *val == '\t'))
            val++;
        if (!key || key[0] == '#')
            continue;
        snprintf(where, sizeof(where), "%s:%d", path, n);
        rc = set_opt(o, key, val && *val ? val : NULL, where);
    }
    fclose(f);
    return rc;
}

static const char *const flag_keys[] = {"-socket",     "-listen",      "-group",  "-user",
                                        "-idle",       "-config",      "-zone",   "-tsig",
                                        "-dns-update", "-dns-address", "-dns-ttl"};

static int parse_args(struct opts *o, int argc, char **argv)
{
    const char *config = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-config") == 0 && i + 1 < argc)
            config = argv[i + 1];
    if (read_config(o, config ? config : CONFIG_DEFAULT, config != NULL))
        return -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-?") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "-syslog") == 0 || strcmp(a, "-relay") == 0 ||
            strcmp(a, "-publish-servers") == 0) {
            set_opt(o, a + 1, NULL, a);
            continue;
        }
        if (strcmp(a, "-no-dnssd") == 0) {
            set_opt(o, "dnssd", "no", a);
            continue;
        }
        size_t k = 0;
        while (k < sizeof(flag_keys) / sizeof(flag_keys[0]) && strcmp(a, flag_keys[k]) != 0)
            k++;
        if (k == sizeof(flag_keys) / sizeof(flag_keys[0])) {
            fprintf(stderr, "rdbroker: unknown option \"%s\": try rdbroker -?\n", a);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "rdbroker: %s needs a value: try rdbroker -?\n", a);
            return -1;
        }
        if (strcmp(a, "-config") != 0 && set_opt(o, a + 1, argv[i + 1], a))
            return -1;
        i++;
    }
    return check_dns(o);
}

static int drop_privileges(const char *user)
{
    if (geteuid() != 0 || strcmp(user, "root") == 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        fprintf(stderr, "rdbroker: -user: no user named \"%s\"\n", user);
        return -1;
    }
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        fprintf(stderr, "rdbroker: cannot become %s: %s\n", user, strerror(errno));
        return -1;
    }
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    struct opts o = {.user = "nobody"};
    int rc = parse_args(&o, argc, argv);
    if (rc) {
        if (rc > 0)
            usage(stdout);
        return rc > 0 ? 0 : 2;
    }
    if (o.cfg.nlisten == 0) {
        snprintf(o.listen[0], RDT_STRING_MAX, "tcp:port=%d", RDB_DEFAULT_PORT);
        o.cfg.listen[0] = o.listen[0];
        o.cfg.nlisten = 1;
    }
    if (o.use_syslog)
        openlog("rdbroker", LOG_PID, LOG_DAEMON);
    o.cfg.log = log_msg;
    o.cfg.log_arg = &o;
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct rdb_broker *b = NULL;
    char err[RDT_ERR_MAX], eps[2048];
    if (!base || rdb_broker_open(&b, base, &o.cfg, err, sizeof(err)) != 0 ||
        drop_privileges(o.user) != 0) {
        if (!b)
            fprintf(stderr, "rdbroker: %s\n", base ? err : "cannot create the event loop");
        rdb_broker_free(b);
        if (base)
            event_base_free(base);
        return 1;
    }
    rdb_broker_endpoints(b, eps, sizeof(eps));
    char hello[2400];
    snprintf(hello, sizeof(hello), "ready: registration on %s; queries on %s",
             o.cfg.sock_path ? o.cfg.sock_path : rdb_sock_path(), eps);
    log_msg(LOG_INFO, hello, &o);
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    event_base_dispatch(base);
    event_free(sigint);
    event_free(sigterm);
    rdb_broker_withdraw(b, 2000); /* the site DNS records, if any */
    rdb_broker_free(b);
    event_base_free(base);
    return 0;
}
