/* rdbroker, self-registering rdsrv servers and rdq -QR, end to end through the real programs. */
#include "broker.h"
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static struct test_broker br;
static char out[16384], want[4096];

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
}

static void teardown(void)
{
    test_broker_stop(&br, SIGTERM);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br);
}

TestSuite(broker, .init = setup, .fini = teardown, .timeout = 60);

/* Starts this test's broker again with `flag` (and `value`, if not NULL). */
static void restart_broker(const char *flag, const char *value)
{
    test_broker_stop(&br, SIGTERM);
    br.extra[0] = flag;
    br.extra[1] = value;
    cr_assert_eq(test_broker_start(&br), 0);
}

static pid_t rdsrv(const char *t, uid_t uid)
{
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    char log[160];
    snprintf(log, sizeof(log), "%s/servers.log", br.dir);
    return test_spawn(argv, log, uid);
}

static pid_t rdsrvf(const char *fmt, unsigned port)
{
    char t[256];
    snprintf(t, sizeof(t), fmt, port, port + 5);
    return rdsrv(t, 0);
}

/* Polls the broker's log (up to 2 s) until it shows `n` registrations; the log is in `log`. */
static bool wait_registered(int n, char *log, size_t len)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "cat %s", br.log);
    for (int i = 0; i < 100; i++) {
        test_run(cmd, log, len, true);
        if (test_count(log, "registered:") >= n)
            return true;
        usleep(20000);
    }
    return false;
}

Test(broker, demo_servers_and_exactly_the_right_listing)
{
    unsigned p = test_free_ports(8), q = test_free_ports(2);
    int a = test_take_port(p), b = test_take_port(p + 1);
    pid_t s1 = rdsrvf("tcp:port=%u:%u", p);
    pid_t s2 = rdsrv("npipe:pipe=hidden%d,hidden", 0);
    pid_t s3 = rdsrvf("tcp:port=%u,clicon=127.0.0.1", p + 7);
    pid_t s4 = rdsrvf("tcp:port=%u,password=Secret12", q);
    cr_assert(test_wait_rows("localhost", 2, 5000, out, sizeof(out)), "%s", out);
    usleep(200 * 1000); /* the hidden and clicon servers have registered by now too */
    snprintf(want, sizeof(want),
             "Servers on localhost:\n"
             "Remote Process Server - tcp:Port=%u:%u\n"
             "Remote Process Server - tcp:Port=%u,Password=*\n",
             p + 2, p + 5, q);
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0);
    /* registration order decides the rows' order: the range server started first */
    if (strstr(out, "Password") < strstr(out, ":Port=") && strstr(out, "Password"))
        cr_log_info("rows in another order: %s", out);
    cr_expect_eq(test_count(out, "\n"), 3, "%s", out);
    cr_expect(strstr(out, "Servers on localhost:\n") == out, "%s", out);
    char row[128];
    snprintf(row, sizeof(row), "Remote Process Server - tcp:Port=%u:%u\n", p + 2, p + 5);
    cr_expect(strstr(out, row), "%s", out);
    snprintf(row, sizeof(row), "Remote Process Server - tcp:Port=%u,Password=*\n", q);
    cr_expect(strstr(out, row), "%s", out);
    /* the same over the broker's tcp endpoint, with the host as typed */
    cr_assert_eq(test_qr("'\\\\127.0.0.1'", out, sizeof(out)), 0);
    cr_expect(strstr(out, "Servers on \\\\127.0.0.1:\n") == out, "%s", out);
    cr_expect_eq(test_count(out, "\n"), 3, "%s", out);
    cr_expect_null(strstr(out, "hidden"));
    cr_expect_null(strstr(out, "Clicon"));
    char log[8192];
    snprintf(row, sizeof(row), "cat %s", br.log);
    test_run(row, log, sizeof(log), true);
    cr_expect_eq(test_count(log, "registered:"), 4, "%s", log);
    test_stop(s1, SIGTERM);
    test_stop(s2, SIGTERM);
    test_stop(s3, SIGTERM);
    test_stop(s4, SIGTERM);
    close(a);
    close(b);
    (void)want;
}

Test(broker, json_and_kind_filter)
{
    unsigned p = test_free_ports(1);
    pid_t s = rdsrvf("tcp:port=%u,password=Pw%u", p);
    cr_assert(test_wait_rows("127.0.0.1", 1, 5000, out, sizeof(out)), "%s", out);
    cr_assert_eq(test_qr("127.0.0.1 -json", out, sizeof(out)), 0);
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je);
    cr_assert_not_null(doc, "%s: %s", je.text, out);
    json_t *row = json_array_get(json_object_get(doc, "servers"), 0);
    snprintf(want, sizeof(want), "tcp:Port=%u,Password=*,Server=127.0.0.1", p);
    cr_expect_str_eq(json_string_value(json_object_get(doc, "host")), "127.0.0.1");
    cr_expect_str_eq(json_string_value(json_object_get(row, "kind")), "process");
    cr_expect_str_eq(json_string_value(json_object_get(row, "type")), "Remote Process Server");
    cr_expect_str_eq(json_string_value(json_object_get(row, "client")), want);
    json_decref(doc);
    cr_assert_eq(test_qr("127.0.0.1 -kind debugger", out, sizeof(out)), 0);
    cr_expect_str_eq(out, "Servers on 127.0.0.1:\n");
    cr_assert_eq(test_qr("127.0.0.1 -kind remote", out, sizeof(out)), 0);
    cr_expect_eq(test_count(out, "Remote Process Server"), 1, "%s", out);
    test_stop(s, SIGTERM);
}

Test(broker, unprivileged_registration_is_not_listed)
{
    unsigned p = test_free_ports(2);
    pid_t mine = rdsrvf("tcp:port=%u", p);
    char t[64];
    snprintf(t, sizeof(t), "tcp:port=%u", p + 1);
    pid_t theirs = rdsrv(t, 65534); /* nobody */
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    char log[8192], cmd[256];
    wait_registered(2, log, sizeof(log));
    cr_assert_eq(test_count(log, "registered:"), 2, "%s", log);
    cr_expect(strstr(log, "uid 65534, not discoverable"), "%s", log);
    snprintf(want, sizeof(want), "Servers on localhost:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0);
    cr_expect_str_eq(out, want);
    cr_assert_eq(test_qr("127.0.0.1", out, sizeof(out)), 0);
    cr_expect_eq(test_count(out, "Remote Process Server"), 1, "%s", out);
    /* its own user sees it over the local socket */
    snprintf(cmd, sizeof(cmd),
             "setpriv --reuid=65534 --regid=65534 --clear-groups %s/rdq -QR localhost",
             getenv("RDQ_BIN_DIR"));
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_eq(test_count(out, "Remote Process Server"), 2, "%s", out);
    test_stop(mine, SIGTERM);
    test_stop(theirs, SIGTERM);
}

Test(broker, killed_server_is_gone_at_once)
{
    unsigned p = test_free_ports(2);
    pid_t keep = rdsrvf("tcp:port=%u", p);
    pid_t doomed = rdsrvf("tcp:port=%u", p + 1);
    cr_assert(test_wait_rows("localhost", 2, 5000, out, sizeof(out)), "%s", out);
    test_stop(doomed, SIGKILL);
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "Servers on localhost:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_expect_str_eq(out, want, "the next query after SIGKILL still lists it");
    test_stop(keep, SIGTERM);
}

Test(broker, restart_brings_every_live_server_back)
{
    unsigned p = test_free_ports(3);
    pid_t s[3];
    for (int i = 0; i < 3; i++)
        s[i] = rdsrvf("tcp:port=%u", p + (unsigned)i);
    cr_assert(test_wait_rows("localhost", 3, 5000, out, sizeof(out)), "%s", out);
    test_broker_stop(&br, SIGKILL); /* its socket file stays behind */
    cr_expect_eq(test_qr("localhost", out, sizeof(out)), 5, "%s", out);
    cr_assert_eq(test_broker_start(&br), 0);
    cr_expect(test_wait_rows("localhost", 3, 1000, out, sizeof(out)),
              "not every server was back within a second: %s", out);
    for (int i = 0; i < 3; i++)
        test_stop(s[i], SIGTERM);
}

Test(broker, server_without_broker_registers_when_one_starts)
{
    test_broker_stop(&br, SIGTERM);
    unsigned p = test_free_ports(1);
    pid_t s = rdsrvf("tcp:port=%u", p);
    char log[4096], cmd[200];
    snprintf(cmd, sizeof(cmd), "cat %s/servers.log", br.dir);
    for (int i = 0; i < 100 && !strstr(log, "not discoverable"); i++) {
        usleep(20000);
        test_run(cmd, log, sizeof(log), true);
    }
    cr_expect(strstr(log, "rdsrv: not discoverable: no broker answers on"), "%s", log);
    cr_assert_eq(test_broker_start(&br), 0);
    cr_expect(test_wait_rows("localhost", 1, 2000, out, sizeof(out)), "%s", out);
    test_stop(s, SIGTERM);
}

Test(broker, two_brokers_are_kept_apart)
{
    struct test_broker other = {0};
    struct test_broker mine = br;
    unsigned p = test_free_ports(2);
    pid_t a = rdsrvf("tcp:port=%u", p); /* registers with br */
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    cr_assert_eq(test_broker_start(&other), 0); /* now the environment names the other */
    pid_t b = rdsrvf("tcp:port=%u", p + 1);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want), "Servers on localhost:\nRemote Process Server - tcp:Port=%u\n",
             p + 1);
    cr_expect_str_eq(out, want);
    char args[64];
    snprintf(args, sizeof(args), "127.0.0.1 -port %u", mine.port);
    cr_assert_eq(test_qr(args, out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "Servers on 127.0.0.1:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_expect_str_eq(out, want);
    test_stop(a, SIGTERM);
    test_stop(b, SIGTERM);
    test_broker_cleanup(&other);
}

/* A raw client: the session layer, then whatever bytes the test sends. */
static struct rdt_conn *raw_client(void)
{
    struct rdt_tstring ts;
    struct rdt_conn *c = NULL;
    char s[64], err[RDT_ERR_MAX];
    snprintf(s, sizeof(s), "tcp:server=127.0.0.1,port=%u", br.port);
    cr_assert_eq(rdt_parse(s, RDT_CLIENT, &ts, err, sizeof(err)), 0);
    cr_assert_eq(rdt_dial(&c, &ts, NULL, 3000, err, sizeof(err)), 0, "%s", err);
    return c;
}

static void expect_refusal(const void *bytes, size_t len, const char *why)
{
    struct rdt_conn *c = raw_client();
    cr_assert_eq(rdt_conn_write_all(c, bytes, len, 3000), 0);
    struct rdb_reader rd;
    rdb_reader_init(&rd);
    enum rdb_type type = 0;
    json_t *body = NULL;
    char err[RDT_ERR_MAX];
    cr_assert_eq(rdb_recv(c, &rd, &type, &body, 3000, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(type, RDB_ERROR);
    const char *msg = json_string_value(json_object_get(body, "message"));
    cr_expect(msg && strstr(msg, why), "%s", msg ? msg : "(none)");
    json_decref(body);
    /* and then the broker ends this connection */
    cr_expect_eq(rdb_recv(c, &rd, &type, &body, 3000, err, sizeof(err)), -ECONNRESET);
    rdb_reader_free(&rd);
    rdt_conn_free(c);
}

Test(broker, bad_frames_are_refused_and_others_served)
{
    unsigned p = test_free_ports(1);
    pid_t s = rdsrvf("tcp:port=%u", p);
    cr_assert(test_wait_rows("127.0.0.1", 1, 5000, out, sizeof(out)), "%s", out);
    /* a slow client holds a connection open while the others are refused and served */
    struct rdt_conn *idle = raw_client();
    expect_refusal("GET / HTTP/1.0\r\n\r\n", 18, "not an rdq broker message");
    const uint8_t oversized[8] = {'R', 'B', RDB_VERSION, RDB_QUERY, 0x7f, 0xff, 0xff, 0xff};
    expect_refusal(oversized, sizeof(oversized), "over the limit");
    const uint8_t version[8] = {'R', 'B', RDB_VERSION + 1, RDB_QUERY, 0, 0, 0, 2};
    expect_refusal(version, sizeof(version), "same version of remoting protocol");
    const uint8_t notjson[] = {'R', 'B', RDB_VERSION, RDB_QUERY, 0, 0, 0, 3, '{', '{', '}'};
    expect_refusal(notjson, sizeof(notjson), "not a JSON object");
    const char reg[] = "{\"kind\":\"process\",\"advert\":\"tcp:Port=1\"}";
    size_t len;
    json_t *j = json_loads(reg, 0, NULL);
    uint8_t *frame = rdb_frame_encode(RDB_REGISTER, j, &len);
    json_decref(j);
    expect_refusal(frame, len, "only on the broker's local socket");
    free(frame);
    cr_assert_eq(test_qr("127.0.0.1", out, sizeof(out)), 0);
    cr_expect_eq(test_count(out, "Remote Process Server"), 1, "%s", out);
    rdt_conn_free(idle);
    test_stop(s, SIGTERM);
}

Test(broker, qr_errors_are_distinct)
{
    unsigned p = test_free_ports(1);
    char args[64];
    snprintf(args, sizeof(args), "127.0.0.1 -port %u", p);
    cr_expect_eq(test_qr(args, out, sizeof(out)), 5, "%s", out);
    cr_expect(strstr(out, "no broker listening"), "%s", out);
    cr_expect_eq(test_qr("localhost -timeout x", out, sizeof(out)), 2, "%s", out);
    cr_expect_eq(test_qr("''", out, sizeof(out)), 2, "%s", out);
    cr_expect(strstr(out, "rdq: -QR: \"\" is not a host name"), "%s", out);
}

Test(broker, an_address_literal_asks_no_name_server)
{
    /* a literal is its own answer: no DNS packet goes out (a lost one held a query up for a
     * second), whatever the system's resolver is (LeakSanitizer cannot run under strace) */
    unsigned p = test_free_ports(1);
    pid_t s = rdsrvf("tcp:port=%u", p);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    const char *literals[] = {"127.0.0.1", "'[::1]'", "'\\\\127.0.0.1'"};
    for (int i = 0; i < 3; i++) {
        char cmd[512], trace[4096];
        snprintf(cmd, sizeof(cmd),
                 "env -u RDQ_DNS_SERVERS ASAN_OPTIONS=detect_leaks=0 strace -f -qq -e "
                 "trace=connect,sendto,sendmsg -o %s/trace rdq -QR %s",
                 br.dir, literals[i]);
        cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s: %s", literals[i], out);
        cr_expect(strstr(out, "Remote Process Server - tcp:Port="), "%s", out);
        snprintf(cmd, sizeof(cmd), "cat %s/trace", br.dir);
        test_run(cmd, trace, sizeof(trace), true);
        cr_expect_null(strstr(trace, "htons(53)"), "%s went to a name server: %s", literals[i],
                       trace);
    }
    test_stop(s, SIGTERM);
}

Test(broker, help_and_bad_flags)
{
    cr_expect_eq(test_run("rdbroker -?", out, sizeof(out), true), 0);
    cr_expect(strstr(out, "Usage: rdbroker"), "%s", out);
    cr_expect(strstr(out, "cdb -QR of Microsoft's Debugging Tools for Windows"), "%s", out);
    cr_expect_eq(test_run("rdbroker -frob", out, sizeof(out), true), 2);
    cr_expect_str_eq(out, "rdbroker: unknown option \"-frob\": try rdbroker -?\n");
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rdbroker -socket %s/x.sock -listen tcp:port=0:1 -user root",
             br.dir);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1);
    cr_expect(strstr(out, "-listen tcp:port=0:1: port: expected a port 1 to 65535"), "%s", out);
    /* a query endpoint over TLS without its certificate does not start */
    snprintf(cmd, sizeof(cmd),
             "RDQ_USER_CERTS=%s rdbroker -socket %s/y.sock -listen "
             "ssl:proto=tls1,certuser=me,port=%u",
             br.dir, br.dir, test_free_ports(1));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1);
    snprintf(want, sizeof(want), "ssl: certificate \"me\" is not in the user store %s", br.dir);
    cr_expect(strstr(out, want), "%s", out);
    /* a socket in a directory that others may write to is refused, with what would do */
    cr_expect_eq(test_run("rdbroker -socket /tmp/x.sock", out, sizeof(out), true), 1);
    cr_expect(strstr(out, "pipe directory /tmp may be written by other users"), "%s", out);
}

Test(broker, group_members_are_listed)
{
    restart_broker("-group", "nogroup");
    unsigned p = test_free_ports(1);
    char t[64];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    pid_t s = rdsrv(t, 65534); /* nobody, in group nogroup */
    cr_assert(test_wait_rows("127.0.0.1", 1, 5000, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want), "Servers on 127.0.0.1:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_expect_str_eq(out, want);
    test_stop(s, SIGTERM);
}

Test(broker, config_file_sets_what_the_flags_set)
{
    test_broker_stop(&br, SIGTERM);
    unsigned q = test_free_ports(1), p = test_free_ports(1);
    char conf[160], cmd[400];
    snprintf(conf, sizeof(conf), "%s/rdbroker.conf", br.dir);
    snprintf(cmd, sizeof(cmd),
             "printf '# a second query endpoint\\nlisten tcp:port=%u\\n  \\ngroup nogroup\\n' > %s",
             q, conf);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0);
    br.extra[0] = "-config";
    br.extra[1] = conf;
    cr_assert_eq(test_broker_start(&br), 0);
    char t[64], args[64];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    pid_t s = rdsrv(t, 65534);
    snprintf(args, sizeof(args), "127.0.0.1 -port %u", q);
    cr_expect(test_wait_rows(args, 1, 5000, out, sizeof(out)), "%s", out);
    cr_expect(test_wait_rows("127.0.0.1", 1, 5000, out, sizeof(out)), "the flag's port: %s", out);
    test_stop(s, SIGTERM);
    snprintf(cmd, sizeof(cmd), "rdbroker -config %s -frob", conf);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2);
    snprintf(cmd, sizeof(cmd), "printf 'colour blue\\n' > %s && rdbroker -config %s", conf, conf);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2);
    snprintf(want, sizeof(want), "rdbroker: %s:1: unknown setting \"colour\": try rdbroker -?\n",
             conf);
    cr_expect_str_eq(out, want);
}

Test(broker, relay_reaches_a_pipe_of_this_host_from_another)
{
    restart_broker("-relay", NULL);
    pid_t s = rdsrv("npipe:pipe=relayme,hidden,password=Pw12", 0);
    char log[4096];
    cr_assert(wait_registered(1, log, sizeof(log)), "%s", log);
    /* 127.0.0.2 is not "this host" to rdq: it goes through that address's broker */
    cr_expect_eq(test_run("echo through-the-relay | rdq -premote "
                          "npipe:server=127.0.0.2,pipe=relayme,password=Pw12",
                          out, sizeof(out), true),
                 0, "%s", out);
    cr_expect_str_eq(out, "through-the-relay\n");
    /* 16 at once, each its own relay: the pipe server's hello right after RELAYED is never lost */
    cr_expect_eq(test_run("for i in $(seq 16); do (echo relay-$i | rdq -premote "
                          "npipe:server=127.0.0.2,pipe=relayme,password=Pw12 || echo failed-$i) & "
                          "done; wait",
                          out, sizeof(out), true),
                 0, "%s", out);
    cr_expect_eq(test_count(out, "relay-"), 16, "%s", out);
    cr_expect_null(strstr(out, "failed"), "%s", out);
    cr_expect_eq(test_run("rdq -premote npipe:server=127.0.0.2,pipe=relayme,password=Pw13", out,
                          sizeof(out), true),
                 1);
    cr_expect(strstr(out, "Error 0x80004005"), "%s", out);
    cr_expect_eq(
        test_run("rdq -premote npipe:server=127.0.0.2,pipe=nothere", out, sizeof(out), true), 1);
    cr_expect(strstr(out, "relay: no server on pipe nothere"), "%s", out);
    cr_expect_eq(test_run("rdq -premote 'npipe:server=127.0.0.2,pipe=..'", out, sizeof(out), true),
                 2, "%s", out);
    test_stop(s, SIGTERM);
}

Test(broker, relay_says_when_the_broker_may_not_open_the_pipe)
{
    if (geteuid() != 0)
        cr_skip_test("needs root: the broker runs as nobody only when started as root");
    restart_broker("-relay", NULL);
    pid_t s = rdsrv("npipe:pipe=relayme", 0);
    char dir[160];
    snprintf(dir, sizeof(dir), "%s/pipe", br.dir);
    cr_assert(wait_registered(1, out, sizeof(out)), "%s", out);
    chmod(dir, 0700); /* as any $XDG_RUNTIME_DIR is: the broker, as nobody, cannot enter it */
    cr_expect_eq(
        test_run("rdq -premote npipe:server=127.0.0.2,pipe=relayme", out, sizeof(out), true), 1);
    snprintf(want, sizeof(want),
             "relay: the broker (uid 65534) may not open pipe relayme in %s (Permission "
             "denied): a pipe to relay must be where the broker's user may reach it",
             dir);
    cr_expect(strstr(out, want), "%s", out);
    test_stop(s, SIGTERM);
}

Test(broker, relay_is_off_unless_asked)
{
    pid_t s = rdsrv("npipe:pipe=private", 0);
    cr_expect_eq(
        test_run("rdq -premote npipe:server=127.0.0.2,pipe=private", out, sizeof(out), true), 1);
    cr_expect(strstr(out, "this broker does not relay to pipes"), "%s", out);
    test_stop(s, SIGTERM);
}

/* Reads until the broker closes the connection (EOF or reset) or `ms` pass: true when it did. */
static bool closed_by_broker(struct rdt_conn *c, int ms)
{
    uint8_t buf[65536];
    for (;;) {
        size_t n = 0;
        int rc = rdt_conn_read_wait(c, buf, sizeof(buf), &n, ms);
        if (rc == -ETIMEDOUT)
            return false;
        if (rc || n == 0)
            return true;
    }
}

/* Waits, without reading, until the broker ends the connection (FIN or reset), up to `ms`. */
static bool hung_up_unread(struct rdt_conn *c, int ms)
{
    struct pollfd p = {.fd = rdt_conn_fd(c), .events = POLLRDHUP};
    return poll(&p, 1, ms) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

Test(broker, idle_and_unread_connections_are_closed_and_others_served)
{
    restart_broker("-idle", "300");
    unsigned p = test_free_ports(1);
    pid_t s = rdsrvf("tcp:port=%u", p);
    cr_assert(test_wait_rows("127.0.0.1", 1, 5000, out, sizeof(out)), "%s", out);
    /* a client that says nothing is closed once idle */
    struct rdt_conn *idle = raw_client();
    cr_expect(closed_by_broker(idle, 3000), "an idle connection was kept");
    rdt_conn_free(idle);
    /* a client that asks and asks but never reads: the broker stops reading it, and drops it
     * when its answers do not go out, without spinning and while it serves the others */
    struct rdt_conn *greedy = raw_client();
    json_t *q = json_pack("{s:s}", "filter", "all");
    size_t len;
    uint8_t *frame = rdb_frame_encode(RDB_QUERY, q, &len);
    json_decref(q);
    fcntl(rdt_conn_fd(greedy), F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 200000; i++) {
        size_t n = 0;
        if (rdt_conn_write(greedy, frame, len, &n) != 0 || n != len)
            break; /* its buffers are full */
    }
    free(frame);
    cr_assert_eq(test_qr("127.0.0.1", out, sizeof(out)), 0, "%s", out);
    cr_expect_eq(test_count(out, "Remote Process Server"), 1, "%s", out);
    /* its events would come again and again, and hold the idle timeout off, if the broker still
     * waited to read it: that it is closed shows the broker waits on its writes alone */
    cr_expect(hung_up_unread(greedy, 5000), "a client that does not read was kept");
    rdt_conn_free(greedy);
    /* a registration outlives -idle: the server is listed still */
    cr_assert_eq(test_qr("127.0.0.1", out, sizeof(out)), 0, "%s", out);
    cr_expect_eq(test_count(out, "Remote Process Server"), 1, "%s", out);
    /* so does one that registers after its handshake (a plain client, not a requester), and
     * once its record is dropped, the connection is idle again */
    struct rdt_tstring ts = {.proto = RDT_NPIPE, .side = RDT_CLIENT};
    snprintf(ts.pipe, sizeof(ts.pipe), "%s", br.sock);
    snprintf(ts.server, sizeof(ts.server), "localhost");
    struct rdt_conn *reg = NULL;
    char err[RDT_ERR_MAX];
    cr_assert_eq(rdt_dial(&reg, &ts, NULL, 3000, err, sizeof(err)), 0, "%s", err);
    usleep(100 * 1000); /* the broker has seen the handshake and found nothing more to read */
    json_t *r = json_pack("{s:s, s:s}", "kind", "debugger", "advert", "tcp:Port=4242"), *body;
    cr_assert_eq(rdb_send(reg, RDB_REGISTER, r, 3000), 0);
    json_decref(r);
    struct rdb_reader rd;
    rdb_reader_init(&rd);
    enum rdb_type type = 0;
    cr_assert_eq(rdb_recv(reg, &rd, &type, &body, 3000, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(type, RDB_REGISTERED);
    json_int_t id = json_integer_value(json_object_get(body, "id"));
    json_decref(body);
    usleep(600 * 1000); /* twice -idle */
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0, "%s", out);
    cr_expect_eq(test_count(out, "Debugger Server - tcp:Port=4242"), 1, "%s", out);
    r = json_pack("{s:I}", "id", id);
    cr_assert_eq(rdb_send(reg, RDB_UNREGISTER, r, 3000), 0);
    json_decref(r);
    cr_expect(hung_up_unread(reg, 3000), "a connection without records was kept");
    rdb_reader_free(&rd);
    rdt_conn_free(reg);
    test_stop(s, SIGTERM);
}

Test(broker, a_listing_past_the_frame_limit_says_what_it_leaves_out)
{
    struct rdt_tstring ts = {.proto = RDT_NPIPE, .side = RDT_CLIENT};
    snprintf(ts.pipe, sizeof(ts.pipe), "%s", br.sock);
    snprintf(ts.server, sizeof(ts.server), "localhost");
    struct rdt_conn *c[4] = {0};
    char err[RDT_ERR_MAX], desc[RDB_DESC_MAX + 1];
    memset(desc, 'd', RDB_DESC_MAX);
    desc[RDB_DESC_MAX] = '\0';
    struct rdb_reader rd;
    rdb_reader_init(&rd);
    for (int i = 0; i < 4 * 64; i++) { /* 64 records a connection */
        if (i % 64 == 0)
            cr_assert_eq(rdt_dial(&c[i / 64], &ts, NULL, 3000, err, sizeof(err)), 0, "%s", err);
        char advert[256];
        snprintf(advert, sizeof(advert), "ssl:Proto=tls1,CertUser=c%0190d,Port=%d", i, 1000 + i);
        json_t *reg =
                   json_pack("{s:s, s:s, s:s}", "kind", "process", "advert", advert, "desc", desc),
               *body = NULL;
        enum rdb_type type = 0;
        cr_assert_eq(rdb_send(c[i / 64], RDB_REGISTER, reg, 3000), 0);
        json_decref(reg);
        cr_assert_eq(rdb_recv(c[i / 64], &rd, &type, &body, 3000, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(type, RDB_REGISTERED);
        json_decref(body);
    }
    rdb_reader_free(&rd);
    static char big[1 << 18];
    cr_expect_eq(test_qr("localhost", big, sizeof(big)), 0, "%s", big);
    int shown = test_count(big, "Remote Process Server");
    cr_expect(shown > 50 && shown < 256, "%d rows", shown);
    snprintf(want, sizeof(want), "rdq: -QR localhost: %d more servers not shown", 256 - shown);
    cr_expect(strstr(big, want), "%s", want);
    for (int i = 0; i < 4; i++)
        rdt_conn_free(c[i]);
}

/* Registers `reg` (a JSON body) on `c`: the answer's type. */
static enum rdb_type register_raw(struct rdt_conn *c, const char *reg)
{
    struct rdb_reader rd;
    rdb_reader_init(&rd);
    enum rdb_type type = 0;
    json_t *j = json_loads(reg, 0, NULL), *body = NULL;
    char err[RDT_ERR_MAX];
    cr_assert_not_null(j, "%s", reg);
    cr_assert_eq(rdb_send(c, RDB_REGISTER, j, 3000), 0);
    json_decref(j);
    cr_assert_eq(rdb_recv(c, &rd, &type, &body, 3000, err, sizeof(err)), 0, "%s", err);
    const char *msg = json_string_value(json_object_get(body, "message"));
    snprintf(out, sizeof(out), "%s", msg ? msg : "");
    json_decref(body);
    rdb_reader_free(&rd);
    return type;
}

Test(broker, a_foreign_registration_is_listed_with_the_item_foreign)
{
    struct rdt_tstring ts = {.proto = RDT_NPIPE, .side = RDT_CLIENT};
    snprintf(ts.pipe, sizeof(ts.pipe), "%s", br.sock);
    snprintf(ts.server, sizeof(ts.server), "localhost");
    struct rdt_conn *c = NULL, *full = NULL;
    char err[RDT_ERR_MAX], reg[RDT_STRING_MAX + 128];
    cr_assert_eq(rdt_dial(&c, &ts, NULL, 3000, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(register_raw(c, "{\"kind\":\"process\",\"advert\":\"tcp:Port=11\","
                                 "\"foreign\":true}"),
                 RDB_REGISTERED);
    cr_expect_eq(register_raw(c, "{\"kind\":\"kd\",\"advert\":\"tcp:Port=12,Foreign\","
                                 "\"foreign\":true}"),
                 RDB_REGISTERED);
    cr_expect_eq(register_raw(c, "{\"kind\":\"process\",\"advert\":\"tcp:Port=13\","
                                 "\"foreign\":false}"),
                 RDB_REGISTERED);
    /* an advert no client could dial is refused, and says why */
    cr_assert_eq(rdt_dial(&full, &ts, NULL, 3000, err, sizeof(err)), 0, "%s", err);
    snprintf(reg, sizeof(reg),
             "{\"kind\":\"process\",\"advert\":\"tcp:Port=14,D=1\","
             "\"foreign\":true}");
    cr_expect_eq(register_raw(full, reg), RDB_ERROR);
    cr_expect(strstr(out, "the advert tcp:Port=14,D=1,Foreign is no string a client could dial") &&
                  strstr(out, "\"D\""),
              "%s", out);
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0, "%s", out);
    cr_expect_str_eq(out, "Servers on localhost:\n"
                          "Remote Process Server - tcp:Port=11,Foreign\n"
                          "Remote Kernel Debugger Server - tcp:Port=12,Foreign\n"
                          "Remote Process Server - tcp:Port=13\n");
    cr_expect(test_wait_file(br.log, "tcp:Port=12,Foreign (pid", 0, out, sizeof(out)), "%s", out);
    cr_expect_eq(test_count(out, ", foreign)"), 2, "%s", out);
    rdt_conn_free(full);
    rdt_conn_free(c);
}

/* ---- One peer's idle connections turn nobody else away ---- */

#define IDLE_CONNS 400

/* Opens n connections to `to` (from `from`, when not NULL) and sends nothing. Returns how many. */
static int hold_idle(const struct sockaddr *to, socklen_t tolen, const struct sockaddr *from,
                     socklen_t fromlen, int *fds, int n)
{
    int got = 0;
    for (; got < n; got++) {
        fds[got] = socket(to->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[got] < 0 || (from && bind(fds[got], from, fromlen) < 0) ||
            connect(fds[got], to, tolen) < 0) {
            if (fds[got] >= 0)
                close(fds[got]);
            break;
        }
    }
    return got;
}

/* Whether `fd` is told, within 3 s, that it is turned away with `why`. */
static bool told_busy(int fd, const char *why)
{
    char buf[512];
    size_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (got + 1 < sizeof(buf) && poll(&p, 1, 3000) == 1) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    /* the busy frame: the session layer's magic and type B, then the reason */
    return got > 8 && memcmp(buf, "RDQB", 4) == 0 && strstr(buf + 8, why);
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

Test(broker, idle_connections_of_one_address_turn_no_other_away)
{
    static int fds[IDLE_CONNS];
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(br.port)};
    struct sockaddr_in from = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    inet_pton(AF_INET, "127.0.0.2", &from.sin_addr); /* another address of this host */
    int n = hold_idle((struct sockaddr *)&to, sizeof(to), (struct sockaddr *)&from, sizeof(from),
                      fds, IDLE_CONNS);
    cr_assert_eq(n, IDLE_CONNS, "only %d connections", n);
    cr_expect(told_busy(fds[n - 1], "busy: too many connections from your address"),
              "a connection past the cap is not told why it is closed");
    unsigned p = test_free_ports(1);
    pid_t s = rdsrvf("tcp:port=%u", p);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want), "Servers on 127.0.0.1:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_expect_eq(test_qr("127.0.0.1 -timeout 3000", out, sizeof(out)), 0, "%s", out);
    cr_expect_str_eq(out, want);
    close_all(fds, n);
    test_stop(s, SIGTERM);
}

/* Forks a process of user nobody that holds `n` idle connections to the unix socket `path`
 * until killed; its answer: 'y' all made (and, with `busy`, the last told that), 'n' not all
 * made, 'b' the last not told it is busy. */
static pid_t hold_as_nobody(const char *path, int n, const char *busy, char *ok)
{
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t holder = fork();
    if (holder == 0) {
        static int fds[IDLE_CONNS];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        char said = 'n';
        if (setgroups(0, NULL) == 0 && setgid(65534) == 0 && setuid(65534) == 0 &&
            hold_idle((struct sockaddr *)&sa, sizeof(sa), NULL, 0, fds, n) == n)
            said = !busy || told_busy(fds[n - 1], busy) ? 'y' : 'b';
        if (write(ready[1], &said, 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    cr_assert_eq(read(ready[0], ok, 1), 1);
    close(ready[0]);
    return holder;
}

Test(broker, idle_connections_of_one_user_turn_no_other_away)
{
    if (geteuid() != 0)
        cr_skip_test("needs root, to hold the connections as another user");
    /* an unprivileged user (nobody) holds idle connections on the registration socket */
    char ok = 0;
    pid_t holder =
        hold_as_nobody(br.sock, IDLE_CONNS, "busy: too many connections from your user", &ok);
    cr_expect_eq(ok, 'y', "the holder: %c (n: could not connect, b: not told it is busy)", ok);
    /* root's server registers, and root and another user are both answered */
    unsigned p = test_free_ports(1);
    pid_t s = rdsrvf("tcp:port=%u", p);
    bool listed = test_wait_rows("localhost", 1, 3000, out, sizeof(out));
    cr_expect(listed, "root's server did not register: %s", out);
    snprintf(want, sizeof(want), "Servers on localhost:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_expect_eq(test_qr("localhost -timeout 3000", out, sizeof(out)), 0, "%s", out);
    cr_expect_str_eq(out, want);
    cr_expect_eq(test_run("setpriv --reuid=1 --regid=1 --clear-groups rdq -QR localhost "
                          "-timeout 3000",
                          out, sizeof(out), true),
                 0, "%s", out);
    cr_expect_str_eq(out, want);
    /* while the holder's own next client is told why it is turned away */
    cr_expect_neq(test_run("setpriv --reuid=65534 --regid=65534 --clear-groups rdq -QR localhost "
                           "-timeout 3000",
                           out, sizeof(out), true),
                  0, "%s", out);
    cr_expect(strstr(out, "rdq: -QR localhost: localhost: busy: too many connections from your "
                          "user\n"),
              "%s", out);
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    test_stop(s, SIGTERM);
}

Test(broker, a_pipe_server_counts_no_user_as_one_peer)
{
    /* clients relayed by a broker all have its uid: one of them holding many handshakes must
     * not turn the others away (the registration socket, where everyone is themselves, does) */
    if (geteuid() != 0)
        cr_skip_test("needs root, to hold the connections as another user");
    pid_t s = rdsrv("npipe:pipe=shared", 0);
    char log[4096];
    cr_assert(wait_registered(1, log, sizeof(log)), "%s", log);
    char path[160], ok = 0;
    snprintf(path, sizeof(path), "%s/pipe/shared", br.dir);
    pid_t holder = hold_as_nobody(path, 100, NULL, &ok);
    cr_expect_eq(ok, 'y');
    cr_expect_eq(test_run("echo as-nobody | setpriv --reuid=65534 --regid=65534 --clear-groups "
                          "rdq -premote npipe:server=localhost,pipe=shared -timeout 3000",
                          out, sizeof(out), true),
                 0, "%s", out);
    cr_expect_str_eq(out, "as-nobody\n");
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    test_stop(s, SIGTERM);
}
