/* Name resolution with c-ares against a real dnsmasq, and rdq -QR's distinct failures. */
#include "discover.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct test_broker br;
static pid_t dns_pid;
static char out[16384], err[RDT_ERR_MAX];

/* dnsmasq on a free loopback port, answering for example.test only. */
static void start_dns(void)
{
    const char *records[] = {"--local=/example.test/", "--host-record=host1.example.test,127.0.0.1",
                             "--host-record=host6.example.test,::1", NULL};
    dns_pid = test_dnsmasq(records);
    char addrs[1][64];
    for (int i = 0; i < 200; i++) {
        if (rdd_resolve("host1.example.test", 200, addrs, 1, err, sizeof(err)) == 1)
            return;
        usleep(10000);
    }
    cr_assert_fail("dnsmasq did not answer: %s", err);
}

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
    start_dns();
}

static void teardown(void)
{
    test_stop(dns_pid, SIGTERM);
    test_broker_stop(&br, SIGTERM);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br);
}

TestSuite(discover, .init = setup, .fini = teardown, .timeout = 60);

Test(discover, resolves_names_and_literals)
{
    char a[4][64];
    cr_expect_eq(rdd_resolve("host1.example.test", 2000, a, 4, err, sizeof(err)), 1, "%s", err);
    cr_expect_str_eq(a[0], "127.0.0.1");
    cr_expect_eq(rdd_resolve("\\\\host6.example.test", 2000, a, 4, err, sizeof(err)), 1, "%s", err);
    cr_expect_str_eq(a[0], "::1");
    cr_expect_eq(rdd_resolve("127.0.0.1", 2000, a, 4, err, sizeof(err)), 1);
    cr_expect_str_eq(a[0], "127.0.0.1");
    cr_expect_eq(rdd_resolve("[::1]", 2000, a, 4, err, sizeof(err)), 1);
    cr_expect_str_eq(a[0], "::1");
    cr_expect_eq(rdd_resolve("nope.example.test", 2000, a, 4, err, sizeof(err)), -RDD_NOT_FOUND);
    cr_expect(strstr(err, "nope.example.test: name not found"), "%s", err);
}

Test(discover, closed_name_server_is_unreachable)
{
    char servers[64], a[1][64];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", test_free_ports(1));
    setenv("RDQ_DNS_SERVERS", servers, 1);
    cr_expect_eq(rdd_resolve("host1.example.test", 1000, a, 1, err, sizeof(err)), -RDD_UNREACHABLE,
                 "%s", err);
}

static pid_t server(unsigned port)
{
    char t[64], log[160];
    snprintf(t, sizeof(t), "tcp:port=%u", port);
    snprintf(log, sizeof(log), "%s/servers.log", br.dir);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    return test_spawn(argv, log, 0);
}

Test(discover, qr_by_name_and_ipv6_literal)
{
    unsigned p = test_free_ports(1);
    pid_t s = server(p);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    char want[256];
    cr_assert_eq(test_qr("host1.example.test", out, sizeof(out)), 0, "%s", out);
    snprintf(want, sizeof(want),
             "Servers on host1.example.test:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_expect_str_eq(out, want);
    cr_assert_eq(test_qr("::1", out, sizeof(out)), 0, "%s", out);
    snprintf(want, sizeof(want), "Servers on ::1:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_expect_str_eq(out, want);
    cr_assert_eq(test_qr("host6.example.test -json", out, sizeof(out)), 0, "%s", out);
    cr_expect(strstr(out, "\"address\": \"::1\""), "%s", out);
    snprintf(want, sizeof(want), "\"client\": \"tcp:Port=%u,Server=host6.example.test\"", p);
    cr_expect(strstr(out, want), "%s", out);
    test_stop(s, SIGTERM);
}

Test(discover, qr_name_not_found)
{
    cr_expect_eq(test_qr("nope.example.test", out, sizeof(out)), RDD_NOT_FOUND, "%s", out);
    cr_expect_str_eq(out, "rdq: -QR nope.example.test: nope.example.test: name not found "
                          "(Domain name not found)\n");
}

Test(discover, qr_no_broker_listening)
{
    char args[64];
    snprintf(args, sizeof(args), "host1.example.test -port %u", test_free_ports(1));
    cr_expect_eq(test_qr(args, out, sizeof(out)), RDD_NO_BROKER, "%s", out);
    cr_expect(strstr(out, "host1.example.test: no broker listening"), "%s", out);
}

Test(discover, qr_host_unreachable)
{
    /* in a network namespace of its own, rdq has no route to anything */
    cr_expect_eq(test_run("unshare -n rdq -QR 192.0.2.1 -timeout 300", out, sizeof(out), true),
                 RDD_UNREACHABLE, "%s", out);
    cr_expect(strstr(out, "Network is unreachable"), "%s", out);
}

Test(discover, qr_broker_silent)
{
    unsigned p = test_free_ports(1);
    int fd = test_take_port(p); /* accepts into its backlog, never answers */
    char args[64];
    snprintf(args, sizeof(args), "127.0.0.1 -port %u -timeout 300", p);
    cr_expect_eq(test_qr(args, out, sizeof(out)), RDD_TIMEOUT, "%s", out);
    char want[128];
    snprintf(want, sizeof(want),
             "127.0.0.1:%u accepted the connection but did not complete the handshake within "
             "300 ms",
             p);
    cr_expect(strstr(out, want), "%s", out);
    close(fd);
}

Test(discover, qr_connect_never_answered)
{
    /* nothing answers the connect at all: not a broker that went quiet, and said so */
    unsigned p = test_free_ports(1);
    int fill[2], fd = test_unanswered_port(p, fill);
    cr_assert_geq(fd, 0);
    char args[64], want[96];
    snprintf(args, sizeof(args), "127.0.0.1 -port %u -timeout 300", p);
    cr_expect_eq(test_qr(args, out, sizeof(out)), RDD_UNREACHABLE, "%s", out);
    snprintf(want, sizeof(want), "tcp: no answer from 127.0.0.1:%u within 300 ms", p);
    cr_expect(strstr(out, want), "%s", out);
    cr_expect_null(strstr(out, "handshake"), "%s", out);
    close(fill[0]);
    close(fill[1]);
    close(fd);
}

/* A peer that speaks the next version of the protocol. */
static void *future_broker(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
    struct rdt_conn *c = rdt_auth_conn(rdt_sock_conn(&rdt_tcp_ops, fd), RDT_ROLE_SERVER, NULL,
                                       RDT_PROTOCOL_VERSION + 1);
    rdt_conn_open_wait(c, 3000);
    rdt_conn_free(c);
    return NULL;
}

Test(discover, qr_version_mismatch)
{
    unsigned p = test_free_ports(1);
    int lfd = test_take_port(p);
    pthread_t t;
    pthread_create(&t, NULL, future_broker, &lfd);
    char args[64];
    snprintf(args, sizeof(args), "127.0.0.1 -port %u", p);
    cr_expect_eq(test_qr(args, out, sizeof(out)), RDD_VERSION, "%s", out);
    cr_expect(strstr(out, "The client is not using same version of remoting protocol as the "
                          "server (client protocol 1, server protocol 2)"),
              "%s", out);
    pthread_join(t, NULL);
    close(lfd);
}
