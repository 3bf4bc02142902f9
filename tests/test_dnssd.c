/* DNS-SD on the LAN: rdbroker publishing itself and its servers through a real avahi-daemon
 * (seen by avahi-browse, a real peer), and rdd_lan_open browsing brokers. Each test has its own
 * bus and daemon, in a network namespace of its own (tests/avahi_harness.c). */
#include "avahi_harness.h"
#include "discover.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <event2/event.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct test_avahi av;
static struct test_broker br[3];
static char out[65536], logbuf[16384], host[256];

static void start(bool daemon)
{
    char why[128];
    if (!test_avahi_usable(why, sizeof(why)))
        cr_skip_test("%s", why);
    memset(br, 0, sizeof(br));
    gethostname(host, sizeof(host) - 1);
    int rc = test_avahi_start(&av, daemon);
    cr_assert_eq(rc, 0, "the private bus or avahi-daemon did not start (%s): see %s", strerror(-rc),
                 av.dir);
}

static void with_daemon(void)
{
    start(true);
}

static void bus_only(void)
{
    start(false);
}

static void teardown(void)
{
    if (av.daemon > 0)
        kill(av.daemon, SIGCONT); /* a test that stopped it failed before it went on */
    for (int i = 0; i < 3; i++) {
        test_broker_stop(&br[i], SIGTERM);
        cr_expect(test_logs_clean(&br[i], out, sizeof(out)), "a program reported: %s", out);
        test_broker_cleanup(&br[i]);
    }
    test_avahi_cleanup(&av);
}

TestSuite(dnssd, .fini = teardown, .timeout = 40);

/* Stops the brokers and checks that none (nor a server) reported a sanitizer error: in the test,
 * where an expectation counts (teardown's are only logged). */
static void brokers_done(void)
{
    for (int i = 0; i < 3; i++) {
        test_broker_stop(&br[i], SIGTERM);
        cr_expect(test_logs_clean(&br[i], out, sizeof(out)), "a program reported: %s", out);
    }
}

/* ---- What avahi-browse sees ---- */

struct seen {
    char name[128], addr[64], txt[1024];
    unsigned port;
};

/* avahi-browse -p escapes a name's bytes as \DDD (decimal). */
static void unescape(const char *s, char *d, size_t len)
{
    size_t n = 0;
    while (*s && n + 1 < len) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '9' && s[2] && s[3]) {
            d[n++] = (char)((s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0'));
            s += 4;
        } else {
            d[n++] = *s++;
        }
    }
    d[n] = '\0';
}

/* The resolved rows (=;iface;proto;name;type;domain;host;addr;port;txt) of `type`. */
static int browse(const char *type, struct seen *rows, int max)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "avahi-browse -rpt %s", type);
    test_run(cmd, out, sizeof(out), false);
    int n = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line && n < max;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[10] = {0};
        int k = 0;
        for (char *p = line; k < 10; p = NULL)
            if (!(f[k++] = strtok(p, ";")))
                break;
        if (k < 10 || !f[9] || strcmp(f[0], "=") != 0)
            continue;
        unescape(f[3], rows[n].name, sizeof(rows[n].name));
        snprintf(rows[n].addr, sizeof(rows[n].addr), "%s", f[7]);
        rows[n].port = (unsigned)atoi(f[8]);
        snprintf(rows[n].txt, sizeof(rows[n].txt), "%s", f[9]);
        n++;
    }
    return n;
}

static const struct seen *find_port(const struct seen *rows, int n, unsigned port)
{
    for (int i = 0; i < n; i++)
        if (rows[i].port == port)
            return &rows[i];
    return NULL;
}

/* Polls avahi-browse (up to ms) until `type` has a row on each of the `nports` ports (present)
 * or on none of them (!present). */
static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static int wait_ports(const char *type, const unsigned *ports, int nports, bool present, int ms,
                      struct seen *rows, int max)
{
    for (long end = now_ms() + ms;;) {
        int n = browse(type, rows, max), hits = 0;
        for (int i = 0; i < nports; i++)
            hits += find_port(rows, n, ports[i]) != NULL;
        if (hits == (present ? nports : 0))
            return n;
        if (now_ms() >= end)
            return -1;
        usleep(100000);
    }
}

static void start_broker(int i, const char *a, const char *b)
{
    br[i].extra[0] = a;
    br[i].extra[1] = b;
    cr_assert_eq(test_broker_start(&br[i]), 0, "broker %d did not start", i);
}

static const char *broker_log(int i)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "cat %s", br[i].log);
    test_run(cmd, logbuf, sizeof(logbuf), true);
    return logbuf;
}

/* ---- The broker's own service ---- */

Test(dnssd, two_brokers_one_host_collision_resolved, .init = with_daemon)
{
    start_broker(0, NULL, NULL);
    start_broker(1, NULL, NULL);
    start_broker(2, "-no-dnssd", NULL);
    unsigned ports[] = {br[0].port, br[1].port};
    struct seen rows[16];
    int n = wait_ports(RDB_SERVICE, ports, 2, true, 8000, rows, 16);
    cr_assert_geq(n, 2, "avahi-browse does not see both brokers: %s", out);
    char name[128], alt[140], txt[512];
    snprintf(name, sizeof(name), "rdq broker on %s", host);
    snprintf(alt, sizeof(alt), "%s #2", name);
    int plain = 0, second = 0;
    for (int i = 0; i < 2; i++) {
        const struct seen *s = find_port(rows, n, ports[i]);
        snprintf(txt, sizeof(txt), "\"v=1\" \"host=%s\" \"query=tcp:Port=%u\"", host, ports[i]);
        cr_expect_str_eq(s->txt, txt);
        cr_expect_str_eq(s->addr, "127.0.0.1");
        plain += strcmp(s->name, name) == 0;
        second += strcmp(s->name, alt) == 0;
    }
    cr_expect(plain == 1 && second == 1, "names not \"%s\" and \"%s\"", name, alt);
    char said[300];
    snprintf(said, sizeof(said), "is taken on the LAN; now \"%s\"", alt);
    cr_expect_eq(test_count(broker_log(0), said) + test_count(broker_log(1), said), 1);
    /* -no-dnssd: never published, and no word of DNS-SD */
    cr_expect_null(find_port(rows, n, br[2].port), "%s", out);
    cr_expect_eq(test_count(broker_log(2), "DNS-SD"), 0, "%s", logbuf);
    brokers_done();
}

Test(dnssd, publish_servers_listable_only_and_withdrawn_at_once, .init = with_daemon)
{
    start_broker(0, "-publish-servers", NULL);
    unsigned p = test_free_ports(6);
    char t1[64], t2[64], t3[64], t4[64], pipe[64], foreign[64];
    snprintf(t1, sizeof(t1), "tcp:port=%u", p);
    snprintf(t2, sizeof(t2), "tcp:port=%u,clicon=127.0.0.1", p + 1);
    snprintf(t3, sizeof(t3), "tcp:port=%u,hidden", p + 2);
    snprintf(t4, sizeof(t4), "tcp:port=%u", p + 3);
    snprintf(pipe, sizeof(pipe), "npipe:pipe=shown%u", p);
    const char *a1[] = {"rdsrv", "-t", t1, "-stub", "cat", NULL};
    const char *a2[] = {"rdsrv", "-t", t2, "-stub", "cat", NULL};
    const char *a3[] = {"rdsrv", "-t", t3, "-stub", "cat", NULL};
    const char *a4[] = {"rdsrv", "-t", t4, "-stub", "cat", NULL};
    const char *a5[] = {"rdsrv", "-t", pipe, "-stub", "cat", NULL};
    snprintf(foreign, sizeof(foreign), "tcp:port=%u", p + 5);
    const char *a7[] = {"rdsrv", "-announce", foreign, "-kind", "kd", "--", "sleep", "100", NULL};
    char slog[160];
    snprintf(slog, sizeof(slog), "%s/servers.log", br[0].dir);
    char t6[64];
    snprintf(t6, sizeof(t6), "tcp:port=%u,password=Secret12", p + 4);
    const char *a6[] = {"rdsrv", "-t", t6, "-stub", "cat", NULL};
    test_spawn(a6, slog, 0);
    pid_t tcp = test_spawn(a1, slog, 0);
    test_spawn(a2, slog, 0);
    test_spawn(a3, slog, 0);
    test_spawn(a4, slog, 65534); /* not privileged: never listed remotely */
    test_spawn(a5, slog, 0);
    test_spawn(a7, slog, 0);
    for (int i = 0; i < 250 && test_count(broker_log(0), "registered:") < 7; i++)
        usleep(20000);
    cr_assert_eq(test_count(logbuf, "registered:"), 7, "%s", logbuf);
    cr_assert_eq(test_count(logbuf, "not discoverable"), 1, "%s", logbuf);
    unsigned want[] = {p, br[0].port, p + 4, p + 5};
    struct seen rows[16];
    /* the pipe's server is published on the broker's port; hidden, clicon and unprivileged
     * servers, registered before, never */
    int n = wait_ports(RDB_SERVER_SERVICE, want, 4, true, 8000, rows, 16);
    cr_assert_eq(n, 4, "avahi-browse sees not exactly the listable servers: %s", out);
    char txt[256], name[128];
    snprintf(txt, sizeof(txt), "\"v=1\" \"kind=process\" \"advert=tcp:Port=%u\"", p);
    cr_expect_str_eq(find_port(rows, n, p)->txt, txt);
    snprintf(name, sizeof(name), "tcp:Port=%u on %s", p, host);
    cr_expect_str_eq(find_port(rows, n, p)->name, name);
    snprintf(txt, sizeof(txt), "\"v=1\" \"kind=process\" \"advert=npipe:Pipe=shown%u\"", p);
    cr_expect_str_eq(find_port(rows, n, br[0].port)->txt, txt);
    snprintf(txt, sizeof(txt), "\"v=1\" \"kind=process\" \"advert=tcp:Port=%u,Password=*\"", p + 4);
    cr_expect_str_eq(find_port(rows, n, p + 4)->txt, txt);
    /* a foreign server's string says so, as its listing does */
    snprintf(txt, sizeof(txt), "\"v=1\" \"kind=kd\" \"advert=tcp:Port=%u,Foreign\"", p + 5);
    cr_expect_str_eq(find_port(rows, n, p + 5)->txt, txt);
    /* the server ends: withdrawn at once (browsers drop it within about a second) */
    test_stop(tcp, SIGTERM);
    unsigned gone[] = {p};
    n = wait_ports(RDB_SERVER_SERVICE, gone, 1, false, 5000, rows, 16);
    cr_assert_eq(n, 3, "the ended server is still published, or another is gone: %s", out);
    brokers_done();
}

Test(dnssd, daemon_restart_publishes_again, .init = with_daemon)
{
    start_broker(0, NULL, NULL);
    unsigned ports[] = {br[0].port};
    struct seen rows[8];
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 1, true, 8000, rows, 8), 1, "%s", out);
    test_avahi_daemon_stop(&av);
    cr_assert(test_wait_file(br[0].log, "went away", 5000, logbuf, sizeof(logbuf)), "%s", logbuf);
    cr_assert_eq(test_avahi_daemon_start(&av), 0);
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 1, true, 8000, rows, 8), 1, "not again: %s", out);
    cr_assert(test_wait_file(br[0].log, "is running; publishing", 5000, logbuf, sizeof(logbuf)));
    broker_log(0);
    cr_expect_eq(test_count(logbuf, "avahi-daemon went away"), 1, "%s", logbuf);
    cr_expect_eq(test_count(logbuf, "avahi-daemon is running; publishing"), 1, "%s", logbuf);
    cr_expect_eq(test_count(logbuf, "published \"rdq broker on"), 2, "%s", logbuf);
    cr_expect_eq(test_count(logbuf, "is not running"), 0, "%s", logbuf);
    brokers_done();
}

/* Registers n process servers (tcp:Port=20000+i) with broker i over connections of its unix
 * socket, 64 a connection, kept in c[] (freed by the caller). */
#define MANY_CONNS 16
static void register_many(int i, int n, struct rdt_conn *c[MANY_CONNS])
{
    struct rdt_tstring ts = {.proto = RDT_NPIPE, .side = RDT_CLIENT};
    snprintf(ts.pipe, sizeof(ts.pipe), "%s", br[i].sock);
    snprintf(ts.server, sizeof(ts.server), "localhost");
    char err[RDT_ERR_MAX];
    struct rdb_reader rd;
    rdb_reader_init(&rd);
    cr_assert_leq(n, 64 * MANY_CONNS);
    for (int k = 0; k < n; k++) {
        if (k % 64 == 0)
            cr_assert_eq(rdt_dial(&c[k / 64], &ts, NULL, 3000, err, sizeof(err)), 0, "%s", err);
        char advert[64];
        snprintf(advert, sizeof(advert), "tcp:Port=%d", 20000 + k);
        json_t *reg = json_pack("{s:s, s:s}", "kind", "process", "advert", advert), *body = NULL;
        enum rdb_type type = 0;
        cr_assert_eq(rdb_send(c[k / 64], RDB_REGISTER, reg, 3000), 0);
        json_decref(reg);
        cr_assert_eq(rdb_recv(c[k / 64], &rd, &type, &body, 3000, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(type, RDB_REGISTERED);
        json_decref(body);
    }
    rdb_reader_free(&rd);
}

static void free_conns(struct rdt_conn *c[MANY_CONNS])
{
    for (int k = 0; k < MANY_CONNS; k++)
        rdt_conn_free(c[k]);
}

/* How many `type` services avahi-browse sees (unresolved). */
static int count_services(const char *type)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "avahi-browse -pt %s", type);
    test_run(cmd, out, sizeof(out), false);
    return test_count(out, "+;");
}

/* Polls count_services (up to 20 s) until it sees n; returns the last count. */
static int wait_services(const char *type, int n)
{
    int seen = 0;
    for (int k = 0; k < 100 && (seen = count_services(type)) < n; k++)
        usleep(200000);
    return seen;
}

/* Past avahi-daemon's objects-per-client-max, the servers left out are said once, with a count
 * and the setting, also after the daemon restarts; published servers are summed up. */
Test(dnssd, too_many_objects_said_once_with_the_setting, .init = with_daemon)
{
    cr_assert_eq(test_avahi_daemon_config(&av, "objects-per-client-max=4"), 0);
    start_broker(0, "-publish-servers", NULL);
    struct rdt_conn *c[MANY_CONNS] = {0};
    register_many(0, 6, c);
    cr_assert(test_wait_file(br[0].log, "objects-per-client-max in avahi-daemon.conf", 5000, logbuf,
                             sizeof(logbuf)),
              "%s", logbuf);
    test_avahi_daemon_stop(&av);
    cr_assert(test_wait_file(br[0].log, "went away", 5000, logbuf, sizeof(logbuf)), "%s", logbuf);
    cr_assert_eq(test_avahi_daemon_start(&av), 0);
    cr_assert(test_wait_file(br[0].log, "is running; publishing", 5000, logbuf, sizeof(logbuf)));
    cr_expect(test_wait_file(br[0].log, "servers published as", 6000, logbuf, sizeof(logbuf)));
    usleep(1500000); /* past another summary */
    broker_log(0);
    cr_expect_eq(test_count(logbuf, "objects-per-client-max in avahi-daemon.conf"), 1, "%s",
                 logbuf);
    cr_expect_eq(test_count(logbuf, "Too many objects"), 0, "%s", logbuf);
    cr_expect_eq(test_count(logbuf, "published \"tcp:"), 0, "%s", logbuf);
    cr_expect_geq(test_count(logbuf, "servers published as _rdq-srv._tcp"), 1, "%s", logbuf);
    free_conns(c);
    brokers_done();
}

/* A broker with many servers keeps answering while it publishes them all at once (the daemon
 * starts): it publishes a bounded number a loop turn. */
Test(dnssd, queries_answered_while_many_servers_are_published, .init = bus_only)
{
    start_broker(0, "-publish-servers", NULL);
    struct rdt_conn *c[MANY_CONNS] = {0};
    register_many(0, 640, c);
    static char big[1 << 17], log[1 << 17];
    cr_assert_eq(test_avahi_daemon_start(&av), 0);
    cr_assert(test_wait_file(br[0].log, "is running; publishing", 5000, log, sizeof(log)));
    long worst = 0;
    int during = 0;
    for (int k = 0; k < 5; k++) {
        long t0 = now_ms();
        cr_assert_eq(test_qr("localhost", big, sizeof(big)), 0, "%s", big);
        long took = now_ms() - t0;
        worst = took > worst ? took : worst;
        during += !test_wait_file(br[0].log, "servers published as", 0, log, sizeof(log));
    }
    cr_expect_gt(during, 0, "every query came after the publishing");
    cr_expect_lt(worst, 700, "rdq -QR took %ld ms while the broker published", worst);
    cr_expect_eq(wait_services(RDB_SERVER_SERVICE, 640), 640, "%s", out);
    free_conns(c);
    brokers_done();
}

/* The broker serves as ever without a daemon, says so once, and publishes when one starts. */
Test(dnssd, no_daemon_then_daemon_starts, .init = bus_only)
{
    start_broker(0, NULL, NULL);
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0, "%s", out);
    cr_expect_str_eq(out, "Servers on localhost:\n");
    usleep(300000);
    cr_expect_eq(test_count(broker_log(0), "DNS-SD: avahi-daemon is not running; publishing when "
                                           "it starts"),
                 1, "%s", logbuf);
    cr_assert_eq(test_avahi_daemon_start(&av), 0);
    unsigned ports[] = {br[0].port};
    struct seen rows[8];
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 1, true, 8000, rows, 8), 1, "%s", out);
    cr_expect_eq(test_count(broker_log(0), "is not running"), 1, "%s", logbuf);
    cr_expect_eq(test_count(logbuf, "avahi-daemon is running; publishing"), 1, "%s", logbuf);
    brokers_done();
}

Test(dnssd, no_bus_at_all, .init = bus_only)
{
    test_avahi_no_bus(&av);
    start_broker(0, NULL, NULL);
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0, "%s", out);
    cr_expect_str_eq(out, "Servers on localhost:\n");
    usleep(2500000); /* past a retry: still said once */
    cr_expect_eq(test_count(broker_log(0), "DNS-SD: avahi-daemon is not running; publishing when "
                                           "it starts"),
                 1, "%s", logbuf);
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0, "%s", out);
    brokers_done();
}

/* ---- rdd_lan_open ---- */

static int browse_rdq(const char *args);

struct lan_run {
    struct rdd_lan_broker got[8];
    int n;
    bool done;
    char error[256];
    int nfailed;
    char failed[256];
    struct event_base *base;
    struct rdd_lan *l;
};

static void on_found(const struct rdd_lan_broker *b, void *arg)
{
    struct lan_run *r = arg;
    if (r->n < 8)
        r->got[r->n++] = *b;
}

static void on_failed(const char *instance, const char *why, void *arg)
{
    struct lan_run *r = arg;
    r->nfailed++;
    snprintf(r->failed, sizeof(r->failed), "%s: %s", instance, why);
}

static void on_done(const char *error, void *arg)
{
    struct lan_run *r = arg;
    r->done = true;
    snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
    rdd_lan_free(r->l); /* from inside its callback */
    r->l = NULL;
    event_base_loopbreak(r->base);
}

/* Browses until done, within 9 s (avahi's resolvers give up after 5 s). */
static void lan_browse(struct lan_run *r)
{
    memset(r, 0, sizeof(*r));
    r->base = event_base_new();
    cr_assert_eq(rdd_lan_open(&r->l, r->base, on_found, on_failed, on_done, r), 0);
    struct timeval tv = {9, 0};
    event_base_loopexit(r->base, &tv);
    event_base_dispatch(r->base);
    rdd_lan_free(r->l);
    event_base_free(r->base);
    cr_assert(r->done, "done was not called within 9 s");
}

static const struct rdd_lan_broker *lan_port(const struct lan_run *r, unsigned port)
{
    for (int i = 0; i < r->n; i++)
        if (r->got[i].port == port)
            return &r->got[i];
    return NULL;
}

Test(dnssd, lan_finds_both_brokers, .init = with_daemon)
{
    start_broker(0, NULL, NULL);
    start_broker(1, NULL, NULL);
    unsigned ports[] = {br[0].port, br[1].port};
    struct seen rows[8];
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 2, true, 8000, rows, 8), 2, "%s", out);
    struct lan_run r;
    lan_browse(&r);
    cr_expect_str_eq(r.error, "");
    cr_assert_eq(r.n, 2, "found %d brokers", r.n);
    for (int i = 0; i < 2; i++) {
        const struct rdd_lan_broker *b = lan_port(&r, ports[i]);
        cr_assert_not_null(b, "no broker on port %u", ports[i]);
        cr_expect_str_eq(b->addr, "127.0.0.1");
        cr_expect_str_eq(b->host, host);
        cr_expect_eq(b->version, 1);
        cr_expect_str_eq(b->instance, find_port(rows, 2, ports[i])->name);
    }
    brokers_done();
}

Test(dnssd, lan_finds_a_plain_avahi_publish, .init = with_daemon)
{
    unsigned port = test_free_ports(1);
    char ps[16];
    snprintf(ps, sizeof(ps), "%u", port);
    const char *argv[] = {"avahi-publish-service", "rdq by hand", RDB_SERVICE, ps, "v=1",
                          "host=somehost",         NULL};
    pid_t pub = test_avahi_spawn(argv);
    unsigned ports[] = {port};
    struct seen rows[8];
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 1, true, 8000, rows, 8), 1, "%s", out);
    struct lan_run r;
    lan_browse(&r);
    test_avahi_kill(pub);
    cr_expect_str_eq(r.error, "");
    cr_assert_eq(r.n, 1, "found %d brokers", r.n);
    cr_expect_str_eq(r.got[0].instance, "rdq by hand");
    cr_expect_str_eq(r.got[0].host, "somehost");
    cr_expect_str_eq(r.got[0].addr, "127.0.0.1");
    cr_expect_eq(r.got[0].port, port);
    cr_expect_eq(r.got[0].version, 1);
}

/* A broker whose host has a link-local IPv6 address only: given with its interface, so that it
 * can be dialed (fe80::1%lo), and the transports take such an address as it is. */
Test(dnssd, lan_link_local_ipv6_has_its_scope, .init = with_daemon)
{
    unsigned port = test_free_ports(1);
    char ps[16];
    snprintf(ps, sizeof(ps), "%u", port);
    const char *addr[] = {"avahi-publish-address", "-R", "v6only.local", "fe80::1", NULL};
    const char *svc[] = {
        "avahi-publish-service", "-H", "v6only.local", "rdq v6 only", RDB_SERVICE, ps, "v=1", NULL};
    pid_t a = test_avahi_spawn(addr), s = test_avahi_spawn(svc);
    unsigned ports[] = {port};
    struct seen rows[8];
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 1, true, 8000, rows, 8), 1, "%s", out);
    struct lan_run r;
    lan_browse(&r);
    test_avahi_kill(s);
    test_avahi_kill(a);
    cr_expect_str_eq(r.error, "");
    cr_assert_eq(r.n, 1, "found %d brokers", r.n);
    cr_expect_str_eq(r.got[0].addr, "fe80::1%lo");
    cr_expect_eq(r.got[0].port, port);
    struct rdt_addrs got;
    char err[RDT_ERR_MAX] = "";
    cr_assert_eq(rdt_resolve_addrs("fe80::1%lo", false, 1000, &got, err, sizeof(err)), 1, "%s",
                 err);
    cr_assert_eq(got.n, 1);
    cr_expect_str_eq(got.addr[0], "fe80::1%lo");
    struct sockaddr_storage sa;
    socklen_t len;
    cr_assert_eq(rdt_sockaddr_of(got.addr[0], 53, &sa, &len), 0);
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&sa;
    cr_expect_eq(a6->sin6_family, AF_INET6);
    cr_expect_eq(a6->sin6_scope_id, if_nametoindex("lo"));
    cr_expect_eq(ntohs(a6->sin6_port), 53);
    cr_expect_eq(len, sizeof(*a6));
}

/* Services seen on two interfaces are resolved once each; one that cannot be resolved (its host
 * has no address) is told once, with avahi's reason, and rdq -browse says so. */
Test(dnssd, lan_resolves_each_once_and_tells_failures, .init = with_daemon)
{
    cr_assert_eq(test_avahi_add_iface(&av), 0);
    unsigned port = test_free_ports(2);
    char ps[16], lost[16];
    snprintf(ps, sizeof(ps), "%u", port);
    snprintf(lost, sizeof(lost), "%u", port + 1);
    const char *good[] = {"avahi-publish-service", "rdq by hand", RDB_SERVICE, ps, "v=1", NULL};
    const char *bad[] = {"avahi-publish-service",
                         "-H",
                         "nowhere.local",
                         "rdq nowhere",
                         RDB_SERVICE,
                         lost,
                         "v=1",
                         NULL};
    pid_t g = test_avahi_spawn(good), b = test_avahi_spawn(bad);
    struct seen rows[8];
    int n = 0;
    for (int i = 0; i < 80 && n < 2; i++, usleep(100000)) /* on lo and on rdqd0 */
        n = browse(RDB_SERVICE, rows, 8);
    cr_assert_eq(n, 2, "not seen on both interfaces: %s", out);
    struct lan_run r;
    lan_browse(&r);
    cr_expect_str_eq(r.error, "");
    cr_expect_eq(r.n, 1, "found %d brokers", r.n);
    cr_expect_eq(r.got[0].port, port);
    cr_expect_eq(r.nfailed, 1, "%d failures, the last %s", r.nfailed, r.failed);
    cr_expect_str_eq(r.failed, "rdq nowhere: Timeout reached");
    test_avahi_kill(g); /* rdq -browse below finds the failing one alone */
    int rc = browse_rdq("-list -timeout 8000");
    test_avahi_kill(b);
    cr_expect_neq(rc, 0);
    cr_expect(strstr(logbuf, "the LAN: broker rdq nowhere could not be resolved (Timeout reached)"),
              "%s", logbuf);
    cr_expect_eq(test_count(logbuf, "could not be resolved"), 1, "%s", logbuf);
}

Test(dnssd, lan_says_when_there_is_no_daemon, .init = bus_only)
{
    struct lan_run r;
    lan_browse(&r);
    cr_expect(strstr(r.error, "no avahi-daemon"), "%s", r.error);
    cr_expect_eq(r.n, 0);
    test_avahi_no_bus(&av);
    lan_browse(&r);
    cr_expect(strstr(r.error, "no avahi-daemon"), "%s", r.error);
}

/* ---- rdq -browse through the LAN ---- */

static pid_t serve(int i, unsigned port)
{
    char t[64], log[160];
    snprintf(t, sizeof(t), "tcp:port=%u", port);
    snprintf(log, sizeof(log), "%s/servers.log", br[i].dir);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", "-broker", br[i].sock, NULL};
    return test_spawn(argv, log, 0);
}

/* Runs rdq -browse with `args` (-no-config: the LAN alone); stdout in out, stderr in logbuf. */
static int browse_rdq(const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rdq -browse -no-config %s", args);
    return test_run_err(cmd, out, sizeof(out), logbuf, sizeof(logbuf));
}

Test(dnssd, browse_lists_the_servers_of_both_brokers, .init = with_daemon)
{
    start_broker(0, NULL, NULL);
    start_broker(1, NULL, NULL);
    unsigned p = test_free_ports(2), ports[] = {br[0].port, br[1].port};
    serve(0, p);
    serve(1, p + 1);
    struct seen rows[8];
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 2, true, 8000, rows, 8), 2, "%s", out);
    char want[2][256];
    for (int i = 0; i < 2; i++)
        snprintf(want[i], sizeof(want[i]),
                 "%s\tRemote Process Server\ttcp:Port=%u,Server=127.0.0.1\n", host, p + i);
    bool both = false;
    for (int tries = 0; tries < 50 && !both; tries++) /* until both servers registered */
        both = browse_rdq("-list") == 0 && strstr(out, want[0]) && strstr(out, want[1]);
    cr_expect(both, "%s%s", out, logbuf);
    cr_expect_eq(test_count(out, "\n"), 2, "%s", out);
    cr_expect_str_eq(logbuf, "");
    /* -QR without a host: the same, grouped */
    char cmd[256], one[160];
    snprintf(cmd, sizeof(cmd), "rdq -QR -no-config");
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    snprintf(one, sizeof(one), "Servers on %s:\nRemote Process Server - tcp:Port=%u\n", host, p);
    cr_expect(strstr(out, one), "%s", out);
    cr_expect_eq(test_count(out, "Servers on "), 2, "%s", out);
    brokers_done();
}

Test(dnssd, browse_escapes_fields_and_reports_other_versions, .init = with_daemon)
{
    start_broker(0, "-no-dnssd", NULL);
    unsigned p = test_free_ports(2), far = test_free_ports(1);
    serve(0, p);
    char ps[16], fs[16];
    snprintf(ps, sizeof(ps), "%u", br[0].port);
    snprintf(fs, sizeof(fs), "%u", far);
    /* a broker whose host name holds the escape character (control characters never come
     * through: lan.c takes printable names only), and one of another version */
    const char *odd[] = {"avahi-publish-service", "odd one", RDB_SERVICE, ps, "v=1",
                         "host=back\\slash\\",    NULL};
    const char *next[] = {"avahi-publish-service", "next one", RDB_SERVICE, fs, "v=2",
                          "host=future",           NULL};
    pid_t a = test_avahi_spawn(odd), b = test_avahi_spawn(next);
    unsigned ports[] = {br[0].port, far};
    struct seen rows[8];
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 2, true, 8000, rows, 8), 2, "%s", out);
    char want[256];
    snprintf(want, sizeof(want),
             "back\\\\slash\\\\\tRemote Process Server\ttcp:Port=%u,Server=127.0.0.1\n", p);
    int rc = 0;
    for (int tries = 0; tries < 5 && !strstr(out, want); tries++)
        rc = browse_rdq("-list");
    test_avahi_kill(a);
    test_avahi_kill(b);
    cr_expect_str_eq(out, want, "%s", logbuf);
    cr_expect_eq(rc, 1, "%s", logbuf);
    cr_expect(strstr(logbuf, "rdq: -browse: future: the broker speaks version 2 of the protocol"),
              "%s", logbuf);
    brokers_done();
}

/* avahi-daemon hangs (stopped) while the broker has servers to withdraw and to publish: avahi's
 * calls wait up to 25 s for the daemon, in the broker's publishing process, and the broker
 * answers queries as ever, the new server among the rows; the daemon goes on: it is published. */
Test(dnssd, queries_answered_while_the_daemon_hangs, .init = with_daemon)
{
    start_broker(0, "-publish-servers", NULL);
    unsigned p = test_free_ports(2);
    while (p + 1 >= 20000 && p < 20300) /* register_many's */
        p = test_free_ports(2);
    pid_t first = serve(0, p);
    unsigned ports[] = {p, p + 1};
    static struct seen rows[400];
    cr_assert_eq(wait_ports(RDB_SERVER_SERVICE, ports, 1, true, 8000, rows, 400), 1, "%s", out);
    cr_assert_eq(kill(av.daemon, SIGSTOP), 0);
    test_stop(first, SIGTERM); /* its service withdrawn: a call to the daemon */
    serve(0, p + 1);
    for (int i = 0; i < 250 && test_count(broker_log(0), "registered:") < 2; i++)
        usleep(20000);
    int rc = test_qr("localhost -timeout 3000", out, sizeof(out));
    if (rc != 0)
        kill(av.daemon, SIGCONT);
    cr_assert_eq(rc, 0, "rdq -QR had no answer while avahi-daemon was stopped: %s", out);
    char row[64], gone[64];
    snprintf(row, sizeof(row), "tcp:Port=%u\n", p + 1);
    snprintf(gone, sizeof(gone), "tcp:Port=%u\n", p);
    cr_expect(strstr(out, row), "%s", out);
    cr_expect(!strstr(out, gone), "%s", out);
    /* registrations answered meanwhile, each a new state for the publishing process, which
     * reads none of them: more than its socket holds */
    struct rdt_conn *c[MANY_CONNS] = {0};
    register_many(0, 300, c);
    static char big[1 << 16];
    rc = test_qr("localhost -timeout 3000", big, sizeof(big));
    kill(av.daemon, SIGCONT);
    cr_assert_eq(rc, 0, "rdq -QR had no answer while avahi-daemon was stopped: %s", big);
    cr_expect_eq(test_count(big, "\n"), 1 + 301, "%s", big);
    cr_expect_geq(wait_ports(RDB_SERVER_SERVICE, ports + 1, 1, true, 15000, rows, 400), 1,
                  "the new server is not published");
    cr_expect_geq(wait_ports(RDB_SERVER_SERVICE, ports, 1, false, 5000, rows, 400), 1,
                  "the ended server is still published");
    cr_expect_eq(wait_services(RDB_SERVER_SERVICE, 301), 301, "%s", out);
    free_conns(c);
    brokers_done();
}

/* The broker's publishing process (its only child), or 0. */
static pid_t publisher(pid_t broker)
{
    char path[64], buf[64] = "";
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)broker, (int)broker);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    return (pid_t)atoi(buf);
}

/* Whether pid runs (a zombie does not). */
static bool alive(pid_t pid)
{
    char path[64], state = 'Z';
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
        state = 'Z';
    fclose(f);
    return state != 'Z' && state != 'X';
}

/* The publishing process killed: the broker says so once and starts another, which publishes the
 * broker and its servers again; the broker killed, its publishing process dies with it. */
Test(dnssd, publishing_process_started_again_and_dies_with_the_broker, .init = with_daemon)
{
    start_broker(0, "-publish-servers", NULL);
    unsigned p = test_free_ports(1);
    serve(0, p);
    unsigned ports[] = {br[0].port}, sports[] = {p};
    struct seen rows[8];
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 1, true, 8000, rows, 8), 1, "%s", out);
    cr_assert_geq(wait_ports(RDB_SERVER_SERVICE, sports, 1, true, 8000, rows, 8), 1, "%s", out);
    pid_t first = publisher(br[0].pid);
    cr_assert_gt(first, 0);
    cr_assert_eq(kill(first, SIGKILL), 0);
    cr_assert(test_wait_file(br[0].log, "the publishing process", 3000, logbuf, sizeof(logbuf)),
              "%s", logbuf);
    for (int i = 0; i < 100 && test_count(broker_log(0), "published \"rdq broker on") < 2; i++)
        usleep(100000);
    cr_expect_eq(test_count(logbuf, "published \"rdq broker on"), 2, "%s", logbuf);
    cr_expect_eq(test_count(logbuf, "publishing process"), 1, "%s", logbuf);
    cr_assert_geq(wait_ports(RDB_SERVER_SERVICE, sports, 1, true, 8000, rows, 8), 1, "%s", out);
    cr_assert_geq(wait_ports(RDB_SERVICE, ports, 1, true, 8000, rows, 8), 1, "%s", out);
    pid_t second = publisher(br[0].pid);
    cr_assert(second > 0 && second != first, "%d, %d", (int)first, (int)second);
    test_broker_stop(&br[0], SIGKILL);
    int i = 0;
    while (i++ < 200 && alive(second))
        usleep(10000);
    cr_expect(!alive(second), "the publishing process outlived the broker");
}
