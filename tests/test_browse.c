/* rdq -browse -list / -json and rdq -QR without a host, against real brokers on distinct
 * loopback addresses: named hosts, a hosts file, and the DNS-SD records of a real dnsmasq. */
#include "helpers.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct test_broker br[2];
static unsigned srv[2], silent_port;
static int silent_fd = -1;
static pid_t dns_pid;
static char out[16384], errs[8192], cmd[2048], want[1024];

/* dnsmasq on a free port with the unicast DNS-SD records of both brokers, a silent one, and one
 * that speaks another version. */
static void start_dns(void)
{
    char a[4][160];
    /* one instance named as rdbroker names itself: spaces and all */
    snprintf(a[0], sizeof(a[0]),
             "--srv-host=rdq broker on one._rdq._tcp.example.test,host2.example.test,%u,0,0",
             br[0].port);
    snprintf(a[1], sizeof(a[1]), "--srv-host=two._rdq._tcp.example.test,host3.example.test,%u,0,0",
             br[1].port);
    snprintf(a[2], sizeof(a[2]),
             "--srv-host=quiet._rdq._tcp.example.test,host4.example.test,%u,0,0", silent_port);
    snprintf(a[3], sizeof(a[3]), "--srv-host=next._rdq._tcp.example.test,host2.example.test,1,0,0");
    const char *records[] = {
        "--local=/example.test/",
        "--local=/quiet.test/",
        "--local=/next.test/",
        "--host-record=host2.example.test,127.0.0.2",
        "--host-record=host3.example.test,127.0.0.3",
        "--host-record=host4.example.test,127.0.0.4",
        "--ptr-record=_rdq._tcp.example.test,rdq broker on one._rdq._tcp.example.test",
        "--ptr-record=_rdq._tcp.example.test,two._rdq._tcp.example.test",
        a[0],
        a[1],
        "--txt-record=rdq broker on one._rdq._tcp.example.test,v=1,host=host2",
        "--txt-record=two._rdq._tcp.example.test,v=1,host=host3",
        "--ptr-record=_rdq._tcp.quiet.test,quiet._rdq._tcp.example.test",
        a[2],
        "--txt-record=quiet._rdq._tcp.example.test,v=1",
        "--ptr-record=_rdq._tcp.next.test,next._rdq._tcp.example.test",
        a[3],
        "--txt-record=next._rdq._tcp.example.test,v=2",
        NULL};
    dns_pid = test_dnsmasq(records);
    for (int i = 0; i < 200; i++) {
        if (test_run("rdq -QR host2.example.test -timeout 200", out, sizeof(out), true) !=
            3 /* not found: not up yet */)
            return;
        usleep(10000);
    }
    cr_assert_fail("dnsmasq did not answer: %s", out);
}

static void setup(void)
{
    cr_assert_eq(test_two_brokers(br, srv, out, sizeof(out)), 0, "%s", out);
    silent_port = test_free_ports(1);
    silent_fd = test_take_port(silent_port); /* accepts into its backlog, never answers */
    unsetenv("RDQ_BROKER_SOCK");
    unsetenv("RDQ_BROKER_PORT");
    setenv("RDQ_HOSTS", "/nonexistent", 1);
    start_dns();
}

static void teardown(void)
{
    test_stop(dns_pid, SIGTERM);
    if (silent_fd >= 0)
        close(silent_fd);
    cr_expect(test_logs_clean(&br[0], out, sizeof(out)), "a program reported: %s", out);
    cr_expect(test_logs_clean(&br[1], out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br[1]);
    test_broker_cleanup(&br[0]);
}

TestSuite(browse, .init = setup, .fini = teardown, .timeout = 60);

/* Runs rdq with `args`; stdout in out, stderr in errs; returns the exit status. */
static int rdq(const char *args)
{
    snprintf(cmd, sizeof(cmd), "rdq %s", args);
    return test_run_err(cmd, out, sizeof(out), errs, sizeof(errs));
}

static const char *two_hosts(void)
{
    static char h[128];
    snprintf(h, sizeof(h), "-no-lan -host 127.0.0.2:%u -host 127.0.0.3:%u", br[0].port, br[1].port);
    return h;
}

static const char *rows_of_both(const char *h2, const char *h3)
{
    snprintf(want, sizeof(want),
             "%s\tRemote Process Server\ttcp:Port=%u,Server=%s\n"
             "%s\tRemote Process Server\ttcp:Port=%u,Password=*,Server=%s\n",
             h2, srv[0], h2, h3, srv[1], h3);
    return want;
}

Test(browse, list_shows_every_host)
{
    char args[256];
    snprintf(args, sizeof(args), "-browse -list %s", two_hosts());
    cr_expect_eq(rdq(args), 0, "%s%s", out, errs);
    cr_expect_str_eq(out, rows_of_both("127.0.0.2", "127.0.0.3"));
    cr_expect_str_eq(errs, "");
    /* not in a terminal, -browse lists as -list does */
    snprintf(args, sizeof(args), "-browse %s", two_hosts());
    cr_expect_eq(rdq(args), 0, "%s%s", out, errs);
    cr_expect_str_eq(out, rows_of_both("127.0.0.2", "127.0.0.3"));
    snprintf(args, sizeof(args), "-browse -list -kind debugger %s", two_hosts());
    cr_expect_eq(rdq(args), 0, "%s%s", out, errs);
    cr_expect_str_eq(out, "");
}

Test(browse, a_silent_host_is_reported_and_the_rest_shown)
{
    char args[256];
    snprintf(args, sizeof(args),
             "-browse -list %s -host 127.0.0.4:%u -host nope.example.test "
             "-timeout 500",
             two_hosts(), silent_port);
    cr_expect_eq(rdq(args), 1, "%s%s", out, errs);
    cr_expect_str_eq(out, rows_of_both("127.0.0.2", "127.0.0.3"));
    snprintf(want, sizeof(want),
             "rdq: -browse: 127.0.0.4: tcp: 127.0.0.4:%u accepted the connection but did not "
             "complete the handshake within ",
             silent_port);
    cr_expect(strstr(errs, want), "%s", errs);
    cr_expect(strstr(errs, "rdq: -browse: nope.example.test: name not found"), "%s", errs);
    cr_expect_eq(test_count(errs, "rdq: "), 2, "%s", errs);
}

Test(browse, json_has_rows_and_failures)
{
    char args[256];
    snprintf(args, sizeof(args), "-browse -json %s -host 127.0.0.4:%u -timeout 500", two_hosts(),
             silent_port);
    cr_expect_eq(rdq(args), 1, "%s%s", out, errs);
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je);
    cr_assert(doc, "not JSON: %s", out);
    json_t *hosts = json_object_get(doc, "hosts"), *failed = json_object_get(doc, "failed");
    cr_assert_eq(json_array_size(hosts), 2, "%s", out);
    cr_assert_eq(json_array_size(failed), 1, "%s", out);
    json_t *h = json_array_get(hosts, 1), *row = json_array_get(json_object_get(h, "servers"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(h, "host")), "127.0.0.3");
    cr_expect_eq(json_integer_value(json_object_get(h, "port")), br[1].port);
    snprintf(want, sizeof(want), "tcp:Port=%u,Password=*,Server=127.0.0.3", srv[1]);
    cr_expect_str_eq(json_string_value(json_object_get(row, "client")), want);
    cr_expect_str_eq(json_string_value(json_object_get(row, "type")), "Remote Process Server");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(failed, 0), "what")),
                     "127.0.0.4");
    json_decref(doc);
}

Test(browse, qr_without_host_groups_every_host)
{
    char args[256];
    snprintf(args, sizeof(args), "-QR %s", two_hosts());
    cr_expect_eq(rdq(args), 0, "%s%s", out, errs);
    snprintf(want, sizeof(want),
             "Servers on 127.0.0.2:\nRemote Process Server - tcp:Port=%u\n\n"
             "Servers on 127.0.0.3:\nRemote Process Server - tcp:Port=%u,Password=*\n",
             srv[0], srv[1]);
    cr_expect_str_eq(out, want);
}

Test(browse, hosts_file)
{
    char path[128], args[256];
    snprintf(path, sizeof(path), "%s/hosts", br[0].dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# brokers of the lab\n127.0.0.2:%u\n\n127.0.0.3:%u  # the second\n", br[0].port,
            br[1].port);
    fclose(f);
    setenv("RDQ_HOSTS", path, 1);
    cr_expect_eq(rdq("-browse -list -no-lan"), 0, "%s%s", out, errs);
    cr_expect_str_eq(out, rows_of_both("127.0.0.2", "127.0.0.3"));
    /* a host both named and in the file is asked once */
    snprintf(args, sizeof(args), "-browse -list -no-lan -host 127.0.0.2:%u", br[0].port);
    cr_expect_eq(rdq(args), 0, "%s%s", out, errs);
    cr_expect_str_eq(out, rows_of_both("127.0.0.2", "127.0.0.3"));
    cr_expect_eq(rdq("-browse -list -no-lan -no-config"), 0, "%s%s", out, errs);
    cr_expect_str_eq(out, "");
    f = fopen(path, "a");
    fprintf(f, "two words\n");
    fclose(f);
    cr_expect_eq(rdq("-browse -list -no-lan"), 2, "%s%s", out, errs);
    snprintf(want, sizeof(want), "rdq: %s:5: a line is HOST, HOST:PORT or \"domain DOMAIN\"\n",
             path);
    cr_expect_str_eq(errs, want);
}

Test(browse, domain_lists_brokers_from_dns)
{
    cr_expect_eq(rdq("-browse -list -no-lan -domain example.test"), 0, "%s%s", out, errs);
    cr_expect_str_eq(out, rows_of_both("host2.example.test", "host3.example.test"));
    cr_expect_str_eq(errs, "");
    /* the domain also comes from the hosts file */
    char path[128];
    snprintf(path, sizeof(path), "%s/hosts", br[0].dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "domain example.test\n");
    fclose(f);
    setenv("RDQ_HOSTS", path, 1);
    cr_expect_eq(rdq("-browse -list -no-lan"), 0, "%s%s", out, errs);
    cr_expect_str_eq(out, rows_of_both("host2.example.test", "host3.example.test"));
}

Test(browse, a_listed_broker_that_does_not_answer_is_reported)
{
    cr_expect_eq(rdq("-browse -list -no-lan -domain example.test -domain quiet.test -timeout 600"),
                 1, "%s%s", out, errs);
    cr_expect_str_eq(out, rows_of_both("host2.example.test", "host3.example.test"));
    cr_expect(strstr(errs, "rdq: -browse: host4.example.test: "), "%s", errs);
    cr_expect_eq(test_count(errs, "rdq: "), 1, "%s", errs);
}

Test(browse, domain_failures_are_named)
{
    cr_expect_eq(rdq("-browse -list -no-lan -domain none.example.test -domain next.test"), 1,
                 "%s%s", out, errs);
    cr_expect_str_eq(out, "");
    cr_expect(strstr(errs, "rdq: -browse: domain none.example.test: no brokers listed "
                           "(_rdq._tcp.none.example.test: name not found"),
              "%s", errs);
    cr_expect(strstr(errs, "rdq: -browse: host2.example.test: the broker speaks version 2 of the "
                           "protocol, this rdq version 1"),
              "%s", errs);
}

Test(browse, usage_errors)
{
    cr_expect_eq(rdq("-browse -list -kind nope"), 2);
    cr_expect(strstr(errs, "-kind is all, debugger or remote"), "%s", errs);
    cr_expect_eq(rdq("-browse -list -bogus"), 2);
    cr_expect(strstr(errs, "rdq: -browse: unknown option \"-bogus\""), "%s", errs);
    cr_expect_eq(rdq("-browse -list -no-lan -host bad:port"), 1);
    cr_expect(strstr(errs, "bad:port: not a host or HOST:PORT"), "%s", errs);
}

Test(browse, rdq_loads_avahi_only_to_browse_the_lan)
{
    /* avahi-client brings libdbus and libsystemd: rdq -QR HOST must not pay for them */
    cr_expect_eq(test_run("readelf -d \"$(command -v rdq)\"", out, sizeof(out), true), 0, "%s",
                 out);
    cr_expect(strstr(out, "(NEEDED)"), "%s", out);
    cr_expect_null(strstr(out, "libavahi"), "rdq links avahi: %s", out);
    cr_expect_null(strstr(out, "libdbus"), "rdq links libdbus: %s", out);
}
