/* rdbroker -dns-update: the broker's DNS-SD records in a real BIND 9 named on a loopback port,
 * written by TSIG-signed dynamic updates, read back with dig, changed behind its back with
 * nsupdate. */
#include "broker.h"
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ZONE "example.test"

static struct test_broker br;
static char dir[64], keyfile[128], server[64], host[64], inst[160];
static unsigned dns_port;
static pid_t named_pid, spoof_pid;
static char out[16384], cmd[2048];

/* Writes `text` to dir/name; the path in path. */
static void put(const char *name, const char *text, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void named_config(void)
{
    char conf[2048], path[128];
    snprintf(conf, sizeof(conf),
             "include \"%s\";\n"
             "options { directory \"%s\"; listen-on port %u { 127.0.0.1; };\n"
             "  listen-on-v6 { none; }; pid-file \"%s/named.pid\"; recursion no;\n"
             "  dnssec-validation no; };\n"
             "controls { };\n"
             "zone \"" ZONE "\" { type master; file \"%s/zone.db\";\n"
             "  allow-update { key rdqkey; }; };\n",
             keyfile, dir, dns_port, dir, dir);
    put("named.conf", conf, path, sizeof(path));
    put("zone.db",
        "$TTL 60\n"
        "@ IN SOA ns." ZONE ". admin." ZONE ". 1 3600 600 86400 60\n"
        "@ IN NS ns." ZONE ".\n"
        "ns IN A 127.0.0.1\n",
        path, sizeof(path));
}

static bool named_ready(void)
{
    snprintf(cmd, sizeof(cmd), "dig +short +time=1 +tries=1 @127.0.0.1 -p %u SOA " ZONE, dns_port);
    return test_run(cmd, out, sizeof(out), true) == 0 && strstr(out, "ns." ZONE ".");
}

static void named_start(void)
{
    char conf[128], log[128];
    snprintf(conf, sizeof(conf), "%s/named.conf", dir);
    snprintf(log, sizeof(log), "%s/named.log", dir);
    named_pid = fork();
    cr_assert_geq(named_pid, 0);
    if (named_pid == 0) {
        freopen(log, "a", stdout);
        freopen(log, "a", stderr);
        execlp("named", "named", "-c", conf, "-u", "root", "-g", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && !named_ready(); i++) {
        cr_assert_eq(waitpid(named_pid, NULL, WNOHANG), 0, "named ended (see %s)", log);
        usleep(20000);
    }
    cr_assert(named_ready(), "named does not answer on port %u", dns_port);
}

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    snprintf(dir, sizeof(dir), "/tmp/rdq-dns-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(keyfile, sizeof(keyfile), "%s/key.conf", dir);
    snprintf(cmd, sizeof(cmd), "tsig-keygen -a hmac-sha256 rdqkey > %s", keyfile);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    dns_port = test_free_ports(1);
    snprintf(server, sizeof(server), "127.0.0.1:%u", dns_port);
    named_config();
    named_start();
    /* the host's label and the instance, as the broker publishes them */
    char name[256] = "";
    gethostname(name, sizeof(name) - 1);
    size_t n = strcspn(name, ".");
    for (size_t i = 0; i < n && i < sizeof(host) - 1; i++)
        host[i] = (char)tolower((unsigned char)name[i]);
    host[n < sizeof(host) - 1 ? n : sizeof(host) - 1] = '\0';
    snprintf(inst, sizeof(inst), "rdq\\032broker\\032on\\032%.40s._rdq._tcp." ZONE ".", name);
}

static void teardown(void)
{
    test_broker_stop(&br, SIGTERM);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br);
    if (spoof_pid > 0) {
        kill(spoof_pid, SIGKILL);
        waitpid(spoof_pid, NULL, 0);
        spoof_pid = 0;
    }
    if (named_pid > 0) {
        kill(named_pid, SIGTERM);
        waitpid(named_pid, NULL, 0);
        named_pid = 0;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(dnsupdate, .init = setup, .fini = teardown, .timeout = 60);

/* dig +short TYPE NAME, into out. */
static const char *dig(const char *type, const char *name)
{
    snprintf(cmd, sizeof(cmd), "dig +short +time=1 +tries=1 @127.0.0.1 -p %u %s '%s'", dns_port,
             type, name);
    test_run(cmd, out, sizeof(out), true);
    return out;
}

/* Polls dig (up to ms) until its answer contains `needle` (present) or does not (!present). */
static bool dig_wait(const char *type, const char *name, const char *needle, bool present, int ms)
{
    for (int waited = 0;; waited += 50) {
        if ((strstr(dig(type, name), needle) != NULL) == present)
            return true;
        if (waited >= ms)
            return false;
        usleep(50000);
    }
}

static void nsupdate(const char *updates)
{
    char text[2048], path[128];
    snprintf(text, sizeof(text), "server 127.0.0.1 %u\nzone " ZONE "\n%ssend\n", dns_port, updates);
    put("nsupdate.txt", text, path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "nsupdate -k %s %s", keyfile, path);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "nsupdate: %s", out);
}

/* Starts the broker publishing in ZONE with key file `key` and TTL `ttl`. */
static void broker_publish(const char *key, const char *ttl)
{
    const char *extra[] = {"-dns-update",  server,      "-zone",    ZONE, "-tsig", key,
                           "-dns-address", "127.0.0.7", "-dns-ttl", ttl,  NULL};
    memcpy(br.extra, extra, sizeof(extra));
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
}

static bool broker_log_has(const char *needle, int ms, char *text, size_t len)
{
    return test_wait_file(br.log, needle, ms, text, len);
}

static char logtext[16384];

Test(dnsupdate, records_published_with_the_instance_escaped)
{
    /* a stale SRV of a crashed run, and another service's PTR under the same name */
    snprintf(cmd, sizeof(cmd),
             "update add %s 60 IN SRV 0 0 1 stale." ZONE ".\n"
             "update add _rdq._tcp." ZONE ". 60 IN PTR other._rdq._tcp." ZONE ".\n",
             inst);
    nsupdate(cmd);
    broker_publish(keyfile, "60");
    cr_assert(dig_wait("PTR", "_rdq._tcp." ZONE, inst, true, 3000), "no PTR %s: %s", inst, out);
    cr_expect(strstr(out, "other._rdq._tcp." ZONE "."), "the other PTR is gone: %s", out);
    char want[256];
    snprintf(want, sizeof(want), "0 0 %u %s." ZONE ".\n", br.port, host);
    cr_expect_str_eq(dig("SRV", inst), want, "the stale SRV stays, or ours is wrong");
    dig("TXT", inst);
    snprintf(want, sizeof(want), "\"v=1\" \"host=");
    cr_expect(strstr(out, want), "TXT: %s", out);
    snprintf(want, sizeof(want), "\"query=tcp:Port=%u\"", br.port);
    cr_expect(strstr(out, want), "TXT: %s", out);
    snprintf(want, sizeof(want), "%s." ZONE, host);
    cr_expect_str_eq(dig("A", want), "127.0.0.7\n");
    cr_expect(
        broker_log_has("site DNS: published \"rdq broker on ", 1000, logtext, sizeof(logtext)),
        "%s", logtext);
}

Test(dnsupdate, records_removed_on_sigterm)
{
    nsupdate("update add _rdq._tcp." ZONE ". 60 IN PTR other._rdq._tcp." ZONE ".\n");
    broker_publish(keyfile, "60");
    cr_assert(dig_wait("PTR", "_rdq._tcp." ZONE, inst, true, 3000), "%s", out);
    test_broker_stop(&br, SIGTERM);
    cr_expect_null(strstr(dig("PTR", "_rdq._tcp." ZONE), inst), "our PTR stays: %s", out);
    cr_expect(strstr(out, "other._rdq._tcp." ZONE "."), "the other PTR went too: %s", out);
    cr_expect_str_eq(dig("SRV", inst), "");
    cr_expect_str_eq(dig("TXT", inst), "");
    char a[128];
    snprintf(a, sizeof(a), "%s." ZONE, host);
    cr_expect_str_eq(dig("A", a), "");
    cr_expect(broker_log_has("site DNS: removed", 100, logtext, sizeof(logtext)), "%s", logtext);
}

Test(dnsupdate, rdq_browse_finds_the_broker_through_its_records)
{
    /* the server given by name, resolved through c-ares as every name is */
    char by_name[64];
    snprintf(by_name, sizeof(by_name), "localhost:%u", dns_port);
    snprintf(server, sizeof(server), "%s", by_name);
    broker_publish(keyfile, "60");
    unsigned p = test_free_ports(1);
    char t[64], log[160], dns[64], want[512];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    snprintf(log, sizeof(log), "%s/servers.log", br.dir);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    test_spawn(argv, log, 0);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    cr_assert(dig_wait("PTR", "_rdq._tcp." ZONE, inst, true, 3000), "%s", out);
    snprintf(dns, sizeof(dns), "127.0.0.1:%u", dns_port);
    setenv("RDQ_DNS_SERVERS", dns, 1);
    const char *browse = "rdq -browse -list -no-lan -no-config -domain " ZONE " -timeout 2000";
    snprintf(want, sizeof(want),
             "%s." ZONE "\tRemote Process Server\ttcp:Port=%u,Server=%s." ZONE "\n", host, p, host);
    cr_expect_eq(test_run(browse, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, want);
    test_broker_stop(&br, SIGTERM);
    cr_expect_eq(test_run(browse, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, "rdq: -browse: domain " ZONE ": no brokers listed"), "%s", out);
}

Test(dnsupdate, records_deleted_by_others_come_back)
{
    broker_publish(keyfile, "2"); /* refreshed every second */
    cr_assert(dig_wait("PTR", "_rdq._tcp." ZONE, inst, true, 3000), "%s", out);
    snprintf(cmd, sizeof(cmd), "update delete _rdq._tcp." ZONE ". PTR\nupdate delete %s SRV\n",
             inst);
    nsupdate(cmd);
    cr_assert_null(strstr(dig("PTR", "_rdq._tcp." ZONE), inst), "%s", out);
    cr_expect(dig_wait("PTR", "_rdq._tcp." ZONE, inst, true, 3000), "no PTR again: %s", out);
    cr_expect(dig_wait("SRV", inst, " 0 ", true, 3000), "no SRV again: %s", out);
}

/* The site lists the host already: HOST.ZONE A with the broker's own address, and a TTL of its
 * own. The broker leaves that set as it is and does not delete it at exit; the AAAA set, which
 * was not there, is the broker's: added, and removed at exit. */
Test(dnsupdate, the_sites_address_records_are_left_alone)
{
    char a[128];
    snprintf(a, sizeof(a), "%s." ZONE, host);
    snprintf(cmd, sizeof(cmd), "update add %s 3600 IN A 127.0.0.7\n", a);
    nsupdate(cmd);
    const char *extra[] = {"-dns-update",  server,      "-zone",        ZONE,  "-tsig", keyfile,
                           "-dns-address", "127.0.0.7", "-dns-address", "::7", NULL};
    memcpy(br.extra, extra, sizeof(extra));
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
    cr_assert(dig_wait("AAAA", a, "::7", true, 3000), "no AAAA: %s", out);
    cr_expect(dig_wait("PTR", "_rdq._tcp." ZONE, inst, true, 3000), "no PTR: %s", out);
    cr_expect(dig_wait("SRV", inst, " 0 ", true, 3000), "no SRV: %s", out);
    snprintf(cmd, sizeof(cmd), "dig +noall +answer @127.0.0.1 -p %u A '%s'", dns_port, a);
    test_run(cmd, out, sizeof(out), true);
    cr_expect(strstr(out, "3600\tIN\tA\t127.0.0.7\n"), "the site's A set was changed: %s", out);
    cr_expect_eq(test_count(out, "IN\tA\t"), 1, "%s", out);
    cr_expect(broker_log_has("already has A records", 1000, logtext, sizeof(logtext)), "%s",
              logtext);
    test_broker_stop(&br, SIGTERM);
    cr_expect_str_eq(dig("A", a), "127.0.0.7\n", "the site's A record went at exit");
    cr_expect_str_eq(dig("AAAA", a), "", "the broker's AAAA stays");
    cr_expect_null(strstr(dig("PTR", "_rdq._tcp." ZONE), inst), "our PTR stays: %s", out);
}

/* The broker's A set, deleted by someone: it comes back at the refresh; replaced by the site's
 * own: the broker adds nothing to it then, and deletes nothing of it at exit. */
Test(dnsupdate, address_sets_at_the_refresh)
{
    char a[128];
    snprintf(a, sizeof(a), "%s." ZONE, host);
    broker_publish(keyfile, "2"); /* refreshed every second */
    cr_assert(dig_wait("A", a, "127.0.0.7", true, 3000), "%s", out);
    snprintf(cmd, sizeof(cmd), "update delete %s A\n", a);
    nsupdate(cmd);
    cr_expect(dig_wait("A", a, "127.0.0.7", true, 3000), "no A again: %s", out);
    snprintf(cmd, sizeof(cmd), "update delete %s A\nupdate add %s 3600 IN A 192.0.2.9\n", a, a);
    nsupdate(cmd);
    cr_expect(broker_log_has("already has A records", 3000, logtext, sizeof(logtext)), "%s",
              logtext);
    cr_expect_str_eq(dig("A", a), "192.0.2.9\n");
    test_broker_stop(&br, SIGTERM);
    cr_expect_str_eq(dig("A", a), "192.0.2.9\n");
}

/* The server gone at exit: the log says truly where the records stay. */
Test(dnsupdate, records_that_cannot_be_removed_are_said_to_stay_in_the_zone)
{
    broker_publish(keyfile, "60");
    cr_assert(broker_log_has("site DNS: published", 3000, logtext, sizeof(logtext)), "%s", logtext);
    kill(named_pid, SIGTERM);
    waitpid(named_pid, NULL, 0);
    named_pid = 0;
    test_broker_stop(&br, SIGTERM);
    cr_expect(broker_log_has("site DNS: the records stay in " ZONE
                             " until this broker starts again (its start replaces its SRV and "
                             "TXT) or someone deletes them; caches forget them after their TTL "
                             "(60 s): ",
                             100, logtext, sizeof(logtext)),
              "%s", logtext);
    cr_expect_null(strstr(logtext, "until their TTL"), "%s", logtext);
}

enum spoof { SPOOF_BADKEY, SPOOF_TC, SPOOF_DROP };

/* A forged reply to the request in req: unsigned, its TSIG (BADKEY) empty, or the TC bit set. */
static size_t forged(const uint8_t *req, uint8_t *buf, enum spoof how)
{
    static const uint8_t tsig_head[] = {6,    'r',  'd',  'q', 'k', 'e', 'y', 0, 0x00,
                                        0xfa, 0x00, 0xff, 0,   0,   0,   0,   0, 29};
    static const uint8_t alg[] = {11, 'h', 'm', 'a', 'c', '-', 's', 'h', 'a', '2', '5', '6', 0};
    memset(buf, 0, 12);
    memcpy(buf, req, 2);
    buf[2] = (uint8_t)(0x80 | (5 << 3) | (how == SPOOF_TC ? 0x02 : 0));
    buf[3] = how == SPOOF_TC ? 0 : 9; /* NOTAUTH */
    if (how == SPOOF_TC)
        return 12;
    buf[11] = 1; /* ARCOUNT */
    size_t n = 12;
    memcpy(buf + n, tsig_head, sizeof(tsig_head)), n += sizeof(tsig_head);
    memcpy(buf + n, alg, sizeof(alg)), n += sizeof(alg);
    uint64_t now = (uint64_t)time(NULL);
    for (int i = 5; i >= 0; i--)
        buf[n++] = (uint8_t)(now >> (8 * i));
    const uint8_t rest[] = {0x01, 0x2c, 0, 0, req[0], req[1], 0, 17, 0, 0};
    memcpy(buf + n, rest, sizeof(rest));
    return n + sizeof(rest);
}

/* A UDP relay on `port` to named that answers each request first with a forged reply. */
static void spoofer_start(unsigned port, enum spoof how)
{
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in ns = {.sin_family = AF_INET, .sin_port = htons((uint16_t)dns_port)};
    me.sin_addr.s_addr = ns.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_DGRAM, 0), up = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert(s >= 0 && up >= 0 && bind(s, (struct sockaddr *)&me, sizeof(me)) == 0 &&
              connect(up, (struct sockaddr *)&ns, sizeof(ns)) == 0);
    spoof_pid = fork();
    cr_assert_geq(spoof_pid, 0);
    if (spoof_pid > 0) {
        close(s), close(up);
        return;
    }
    struct sockaddr_storage peer;
    socklen_t plen = 0;
    uint8_t buf[65536], fake[128];
    for (;;) {
        struct pollfd p[2] = {{.fd = s, .events = POLLIN}, {.fd = up, .events = POLLIN}};
        if (poll(p, 2, -1) < 0)
            _exit(1);
        if (p[0].revents & POLLIN) {
            plen = sizeof(peer);
            ssize_t n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &plen);
            if (n >= 12 && how != SPOOF_DROP)
                sendto(s, fake, forged(buf, fake, how), 0, (struct sockaddr *)&peer, plen);
            if (n >= 12)
                send(up, buf, (size_t)n, 0);
        }
        if (p[1].revents & POLLIN) {
            ssize_t n = recv(up, buf, sizeof(buf), 0);
            if (n > 0 && plen && how != SPOOF_DROP)
                sendto(s, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen);
        }
    }
}

/* Forged unsigned replies come first: a TSIG error, or the TC bit. The broker takes neither: it
 * waits for the signed reply, publishes, and removes its records at exit. */
static void spoofed(enum spoof how)
{
    unsigned port = test_free_ports(1);
    spoofer_start(port, how);
    snprintf(server, sizeof(server), "127.0.0.1:%u", port);
    broker_publish(keyfile, "60");
    cr_assert(dig_wait("PTR", "_rdq._tcp." ZONE, inst, true, 3000), "no PTR: %s", out);
    cr_expect(broker_log_has("site DNS: published", 1000, logtext, sizeof(logtext)), "%s", logtext);
    cr_expect_null(strstr(logtext, "not accepted"), "%s", logtext);
    test_broker_stop(&br, SIGTERM);
    cr_expect_null(strstr(dig("PTR", "_rdq._tcp." ZONE), inst), "our PTR stays: %s", out);
    cr_expect(broker_log_has("site DNS: removed", 100, logtext, sizeof(logtext)), "%s", logtext);
}

Test(dnsupdate, an_unsigned_tsig_error_is_not_taken)
{
    spoofed(SPOOF_BADKEY);
}

Test(dnsupdate, an_unsigned_tc_bit_is_not_obeyed)
{
    spoofed(SPOOF_TC);
}

/* named applies the update, and its replies are lost: the broker never learns that it published,
 * and still removes its records at exit. */
Test(dnsupdate, records_removed_at_exit_when_no_reply_came)
{
    unsigned port = test_free_ports(1);
    spoofer_start(port, SPOOF_DROP);
    snprintf(server, sizeof(server), "127.0.0.1:%u", port);
    broker_publish(keyfile, "60");
    cr_assert(dig_wait("PTR", "_rdq._tcp." ZONE, inst, true, 3000), "no PTR: %s", out);
    cr_assert(broker_log_has("no answer from the DNS server", 5000, logtext, sizeof(logtext)), "%s",
              logtext);
    test_broker_stop(&br, SIGTERM);
    cr_expect_null(strstr(dig("PTR", "_rdq._tcp." ZONE), inst), "our PTR stays: %s", out);
    cr_expect_str_eq(dig("SRV", inst), "");
}

/* named not there yet: the first try meets a closed port (ICMP port unreachable), the next one
 * the server. */
Test(dnsupdate, a_closed_port_is_tried_again)
{
    kill(named_pid, SIGTERM);
    waitpid(named_pid, NULL, 0);
    named_pid = 0;
    broker_publish(keyfile, "60");
    usleep(200000);
    named_start();
    cr_expect(dig_wait("PTR", "_rdq._tcp." ZONE, inst, true, 3000), "no PTR: %s", out);
    cr_expect(broker_log_has("site DNS: published", 1000, logtext, sizeof(logtext)), "%s", logtext);
}

/* No server: the same failure is said once, refresh after refresh. */
Test(dnsupdate, a_server_that_does_not_answer_is_said_once)
{
    unsigned port = test_free_ports(1);
    spoofer_start(port, SPOOF_DROP);
    snprintf(server, sizeof(server), "127.0.0.1:%u", port);
    broker_publish(keyfile, "2");
    cr_assert(broker_log_has("no answer from the DNS server", 5000, logtext, sizeof(logtext)), "%s",
              logtext);
    usleep(4500000); /* another update, timed out too */
    broker_log_has("", 0, logtext, sizeof(logtext));
    cr_expect_eq(test_count(logtext, "no answer from the DNS server"), 1, "%s", logtext);
}

/* A key the server does not know, or the right name with a wrong secret: refused, said clearly,
 * and the broker serves on. */
static void refused(const char *keytext, const char *why)
{
    char path[128];
    put("wrong.conf", keytext, path, sizeof(path));
    broker_publish(path, "2");
    /* BIND's refusal is unsigned: taken when no signed reply came within the 3 tries */
    cr_assert(broker_log_has("is not accepted", 6000, logtext, sizeof(logtext)), "%s", logtext);
    char want[256];
    snprintf(want, sizeof(want),
             "the DNS server 127.0.0.1 refused the update of " ZONE
             ": the TSIG key %s is not accepted (NOTAUTH / %s)",
             strstr(keytext, "otherkey") ? "otherkey" : "rdqkey", why);
    cr_expect(strstr(logtext, want), "want \"%s\" in %s", want, logtext);
    cr_expect_eq(test_qr("localhost", out, sizeof(out)), 0, "%s", out);
    cr_expect(strstr(out, "Servers on localhost:"), "%s", out);
    usleep(1200000); /* a refresh too */
    cr_expect_null(strstr(dig("PTR", "_rdq._tcp." ZONE), inst), "%s", out);
    cr_expect_str_eq(dig("SRV", inst), "");
    cr_expect_eq(test_count(logtext, "is not accepted"), 1, "said once: %s", logtext);
}

Test(dnsupdate, unknown_key_refused)
{
    refused("key \"otherkey\" {\n\talgorithm hmac-sha256;\n"
            "\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\";\n};\n",
            "BADKEY");
}

Test(dnsupdate, wrong_secret_refused)
{
    refused("key \"rdqkey\" {\n\talgorithm hmac-sha256;\n"
            "\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\";\n};\n",
            "BADSIG");
}

Test(dnsupdate, bad_key_file_exits_2_naming_it)
{
    char path[128];
    put("bad.conf", "key rdqkey { algorithm hmac-sha256 };\n", path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "rdbroker -socket %s/b.sock -dns-update %s -zone " ZONE " -tsig %s",
             dir, server, path);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s", out);
    cr_expect(strstr(out, path), "%s", out);
    put("bad2.conf", "key \"k\" { algorithm hmac-sha256; secret \"!!not base64!!\"; };\n", path,
        sizeof(path));
    snprintf(cmd, sizeof(cmd), "rdbroker -socket %s/b.sock -dns-update %s -zone " ZONE " -tsig %s",
             dir, server, path);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s", out);
    cr_expect(strstr(out, "not base64"), "%s", out);
    snprintf(cmd, sizeof(cmd),
             "rdbroker -socket %s/b.sock -dns-update %s -zone " ZONE " -tsig %s/missing.conf", dir,
             server, dir);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s", out);
    cr_expect(strstr(out, "missing.conf: cannot read it: No such file"), "%s", out);
}

/* Key file `text` refused with exit status 2 and `want` in the message. */
static void key_refused(const char *text, const char *want)
{
    char path[128];
    put("bad.conf", text, path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "rdbroker -socket %s/b.sock -dns-update %s -zone " ZONE " -tsig %s",
             dir, server, path);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s: %s", text, out);
    cr_expect(strstr(out, want), "want \"%s\": %s", want, out);
}

#define KEY "key \"rdqkey\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n}"

Test(dnsupdate, key_files_of_one_key_and_nothing_else)
{
    key_refused(KEY "\n", "bad.conf: line 4: expected ; after the key's }");
    key_refused(KEY ";\n" KEY ";\n", "bad.conf: line 5: a second key: the file must hold one key");
    key_refused(KEY ";\nallow-update;\n", "bad.conf: line 5: text after the key");
    char big[1200];
    snprintf(big, sizeof(big),
             "key \"rdqkey\" {\n\talgorithm hmac-sha256;\n\tsecret \"%0600d\";\n};\n", 0);
    key_refused(big, "bad.conf: line 3: the secret is longer than 511 characters");
}

Test(dnsupdate, a_key_file_others_can_read_is_warned_of)
{
    chmod(keyfile, 0640);
    broker_publish(keyfile, "60");
    cr_assert(broker_log_has("site DNS: published", 3000, logtext, sizeof(logtext)), "%s", logtext);
    cr_expect_eq(test_count(logtext, "can be read by users other than its owner (mode 0640)"), 1,
                 "%s", logtext);
}

Test(dnsupdate, zone_and_tsig_required)
{
    snprintf(cmd, sizeof(cmd), "rdbroker -socket %s/b.sock -dns-update %s -tsig %s", dir, server,
             keyfile);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s", out);
    cr_expect(strstr(out, "-dns-update needs -zone ZONE and -tsig KEYFILE"), "%s", out);
    snprintf(cmd, sizeof(cmd), "rdbroker -socket %s/b.sock -zone " ZONE " -tsig %s", dir, keyfile);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s", out);
    cr_expect(strstr(out, "go with -dns-update"), "%s", out);
    snprintf(cmd, sizeof(cmd),
             "rdbroker -socket %s/b.sock -dns-update %s -zone " ZONE " -tsig %s -dns-ttl 1", dir,
             server, keyfile);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s", out);
    cr_expect(strstr(out, "seconds from 2 to 86400"), "%s", out);
    cr_expect_eq(test_run("rdbroker --help", out, sizeof(out), true), 0);
    cr_expect(strstr(out, "-dns-update S"), "%s", out);
}

Test(dnsupdate, settings_from_the_config_file)
{
    char conf[512], path[128];
    snprintf(conf, sizeof(conf),
             "dns-update %s\nzone " ZONE "\ntsig %s\ndns-address 127.0.0.9\ndns-address ::9\n"
             "dns-ttl 30\n",
             server, keyfile);
    put("rdbroker.conf", conf, path, sizeof(path));
    br.extra[0] = "-config";
    br.extra[1] = path;
    cr_assert_eq(test_broker_start(&br), 0);
    char a[128];
    snprintf(a, sizeof(a), "%s." ZONE, host);
    cr_expect(dig_wait("A", a, "127.0.0.9", true, 3000), "%s", out);
    cr_expect_str_eq(dig("AAAA", a), "::9\n");
    snprintf(cmd, sizeof(cmd), "dig +noall +answer @127.0.0.1 -p %u SRV '%s'", dns_port, inst);
    test_run(cmd, out, sizeof(out), true);
    cr_expect(strstr(out, " 30 IN\tSRV 0 0 "), "TTL 30: %s", out);
}

/* The mapped files of process `pid` that contain `lib`, into out ("" when none). */
static const char *mapped(pid_t pid, const char *lib)
{
    snprintf(cmd, sizeof(cmd), "grep -F '%s' /proc/%d/maps | awk '{print $6}' | sort -u", lib,
             (int)pid);
    test_run(cmd, out, sizeof(out), true);
    return out;
}

Test(dnsupdate, rdbroker_links_neither_ldns_nor_openssl)
{
    cr_expect_eq(test_run("readelf -d \"$(command -v rdbroker)\"", out, sizeof(out), true), 0, "%s",
                 out);
    cr_expect(strstr(out, "(NEEDED)"), "%s", out);
    const char *libs[] = {"libldns", "libssl", "libcrypto"};
    for (int i = 0; i < 3; i++)
        cr_expect_null(strstr(out, libs[i]), "rdbroker links %s: %s", libs[i], out);
}

Test(dnsupdate, a_broker_without_dns_update_loads_neither_ldns_nor_openssl)
{
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
    cr_expect_eq(test_qr("localhost", out, sizeof(out)), 0, "%s", out);
    const char *libs[] = {"libldns", "libssl", "libcrypto"};
    for (int i = 0; i < 3; i++)
        cr_expect_str_empty(mapped(br.pid, libs[i]), "rdbroker loaded %s", out);
}

Test(dnsupdate, a_broker_with_dns_update_loads_ldns)
{
    broker_publish(keyfile, "60");
    cr_assert(broker_log_has("site DNS: published", 3000, logtext, sizeof(logtext)), "%s", logtext);
    cr_expect(strstr(mapped(br.pid, "libldns"), "libldns.so.3"), "no libldns mapped: %s", out);
}

Test(dnsupdate, a_broken_libldns_exits_2_naming_it)
{
    char path[128];
    put("libldns.so.3", "", path, sizeof(path)); /* found first, and not a library */
    snprintf(cmd, sizeof(cmd),
             "LD_LIBRARY_PATH=%s rdbroker -socket %s/b.sock -dns-update %s -zone " ZONE " -tsig %s",
             dir, dir, server, keyfile);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s", out);
    cr_expect(strstr(out, "rdbroker: -dns-update needs libldns (libldns3): "), "%s", out);
    cr_expect(strstr(out, "libldns.so.3"), "%s", out);
}
