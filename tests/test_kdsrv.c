/* rdkdsrv, the KD connection server, end to end: gdb through rdq -premote to gdbserver standing
 * in for KGDB on a pseudo-terminal cable (the server's link, and one the client names), to a
 * gdbserver on tcp standing in for QEMU's stub, a second client refused as busy, and a kgdboc
 * stand-in whose console text a watcher reads while gdb breaks in and debugs. */
#include "helpers.h"
#include "ptyline.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct test_broker br;
static struct ptyline line;
static char out[65536];
static char link_s[160]; /* com:port=<line.b>,baud=115200 */

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    memset(&line, 0, sizeof(line));
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
    cr_assert_eq(ptyline_start(&line), 0, "no pseudo-terminals");
    snprintf(link_s, sizeof(link_s), "com:port=%s,baud=115200", line.b);
}

static void teardown(void)
{
    test_broker_stop(&br, SIGTERM);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br); /* stops every program the test spawned */
    ptyline_stop(&line);
}

TestSuite(kdsrv, .init = setup, .fini = teardown, .timeout = 60);

static pid_t spawn(const char *const argv[], const char *name)
{
    char log[192];
    snprintf(log, sizeof(log), "%s/%s.log", br.dir, name);
    pid_t pid = test_spawn(argv, log, 0);
    cr_assert_gt(pid, 0);
    return pid;
}

/* rdkdsrv on tcp port p with `more` arguments; waits until it is listed. */
static void start_kdsrv(unsigned p, const char *const more[], int rows)
{
    char t[64];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[16] = {"rdkdsrv", "-t", t};
    int n = 3;
    for (int i = 0; more[i] && n < 15; i++)
        argv[n++] = more[i];
    spawn(argv, "rdkdsrv");
    cr_assert(test_wait_rows("localhost", rows, 5000, out, sizeof(out)), "%s", out);
    cr_assert(strstr(out, "Remote Kernel Debugger Server"), "%s", out);
}

static void expect_console_only(const char *text);

static const char *target(void)
{
    const char *t = getenv("RDQ_TARGET");
    cr_assert_not_null(t, "RDQ_TARGET names the debug target");
    return t;
}

/* gdb through rdq -premote to server port p (with `k`: -k k), as to a kernel: target remote. */
static int run_gdb_within(int secs, unsigned p, const char *k, char *buf, size_t len)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "timeout %d gdb -batch -nx -ex 'set confirm off' -ex 'set auto-connect-native off' "
             "-ex 'set sysroot /' -ex 'target remote | rdq -premote "
             "tcp:server=127.0.0.1,port=%u%s%s' -ex 'file %s' -ex 'break reached' -ex 'continue' "
             "-ex 'print answer' -ex 'maint print target-stack'",
             secs, p, k ? " -k " : "", k ? k : "", target());
    return test_run(cmd, buf, len, true);
}

static int run_gdb(unsigned p, const char *k, char *buf, size_t len)
{
    return run_gdb_within(30, p, k, buf, len);
}

static void expect_debugged(int rc, const char *gdb_out)
{
    cr_expect_eq(rc, 0, "gdb: %s", gdb_out);
    cr_expect(strstr(gdb_out, "- remote (Remote target"), "not a remote session: %s", gdb_out);
    cr_expect(strstr(gdb_out, "Breakpoint 1, reached ()"), "no stop in reached: %s", gdb_out);
    cr_expect(strstr(gdb_out, "$1 = 42"), "answer is not 42: %s", gdb_out);
}

/* gdbserver on the cable's other end, as KGDB on a target's serial line. */
static void stub_on_line(void)
{
    const char *argv[] = {"gdbserver", line.a, target(), NULL};
    spawn(argv, "gdbserver");
}

Test(kdsrv, gdb_through_the_default_serial_link)
{
    unsigned p = test_free_ports(1);
    stub_on_line();
    const char *more[] = {"-link", link_s, NULL};
    start_kdsrv(p, more, 1);
    expect_debugged(run_gdb(p, NULL, out, sizeof(out)), out);
}

Test(kdsrv, gdb_through_a_serial_link_it_names_and_one_not_allowed_refused)
{
    unsigned p = test_free_ports(1);
    stub_on_line();
    const char *more[] = {"-allow", link_s, NULL};
    start_kdsrv(p, more, 1);
    char named[200], cmd[512];
    snprintf(named, sizeof(named), "com:port=%s,baud=115200", line.b);
    expect_debugged(run_gdb(p, named, out, sizeof(out)), out);
    snprintf(cmd, sizeof(cmd),
             "timeout 10 rdq -premote tcp:server=127.0.0.1,port=%u -k com:port=%s,baud=115200 "
             "</dev/null",
             p, line.a);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, "not allowed: com:Port="), "%s", out);
    /* a plain client: this server has no default link */
    cr_expect_neq(run_gdb(p, NULL, out, sizeof(out)) == 0 && strstr(out, "$1 = 42"), 1, "%s", out);
    cr_expect(strstr(out, "no default link"), "gdb does not show why: %s", out);
}

Test(kdsrv, gdb_through_a_tcp_gdbstub_link)
{
    unsigned p = test_free_ports(2);
    char hostport[64], stub_link[96];
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", p + 1);
    snprintf(stub_link, sizeof(stub_link), "tcp:server=127.0.0.1,port=%u", p + 1);
    const char *stub[] = {"gdbserver", hostport, target(), NULL};
    spawn(stub, "gdbserver");
    const char *more[] = {"-allow", stub_link, NULL};
    start_kdsrv(p, more, 1);
    expect_debugged(run_gdb(p, stub_link, out, sizeof(out)), out);
}

/* rdq -premote -k `k` holding the link (its input a pipe that the test holds open). */
static pid_t hold_link(unsigned p, const char *k, int *wfd)
{
    char t[64];
    snprintf(t, sizeof(t), "tcp:server=127.0.0.1,port=%u", p);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[0], 0);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        close(fds[1]);
        char path[512];
        snprintf(path, sizeof(path), "%s/rdq", getenv("RDQ_BIN_DIR"));
        execl(path, "rdq", "-premote", t, "-k", k, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    *wfd = fds[1];
    return pid;
}

Test(kdsrv, a_second_client_is_refused_as_busy)
{
    unsigned p = test_free_ports(1);
    const char *more[] = {"-link", link_s, NULL};
    start_kdsrv(p, more, 1);
    int wfd;
    pid_t holder = hold_link(p, link_s, &wfd);
    char log[192], cmd[512], busy[256];
    snprintf(log, sizeof(log), "%s/rdkdsrv.log", br.dir);
    cr_assert(test_wait_file(log, "client 1: link", 5000, out, sizeof(out)), "%s", out);
    snprintf(busy, sizeof(busy), "busy: com:Port=%s,Baud=115200 serves another client", line.b);
    snprintf(cmd, sizeof(cmd),
             "timeout 5 rdq -premote tcp:server=127.0.0.1,port=%u -k %s "
             "</dev/null",
             p, link_s);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, busy), "%s", out);
    run_gdb_within(10, p, NULL, out, sizeof(out));
    cr_expect(strstr(out, "Remote failure reply: E."), "gdb does not show the refusal: %s", out);
    cr_expect(strstr(out, busy), "%s", out);
    close(wfd);
    int st = test_wait_exit(holder, 10000);
    cr_expect_neq(st, -1, "the first client did not end");
    if (st == -1) {
        kill(holder, SIGKILL);
        waitpid(holder, NULL, 0);
    }
}

Test(kdsrv, console_watcher_reads_the_console_while_gdb_breaks_in_and_debugs)
{
    unsigned p = test_free_ports(2);
    const char *kg = getenv("RDQ_KGDBOC");
    cr_assert_not_null(kg);
    const char *stand_in[] = {kg, line.a, "sysrq-g", target(), NULL};
    spawn(stand_in, "kgdboc");
    char console[64];
    snprintf(console, sizeof(console), "tcp:port=%u", p + 1);
    const char *more[] = {"-link", link_s, "-console", console, "-break-in", "sysrq-g", NULL};
    start_kdsrv(p, more, 2);
    cr_expect_eq(test_qr("localhost -json", out, sizeof(out)), 0, "%s", out);
    cr_expect(strstr(out, "console of com:Port="), "%s", out);
    char watch[128], cfile[192], text[65536];
    snprintf(watch, sizeof(watch), "tcp:server=127.0.0.1,port=%u", p + 1);
    snprintf(cfile, sizeof(cfile), "%s/console.out", br.dir);
    int wfd;
    pid_t watcher = fork();
    if (watcher == 0) {
        int fds[2];
        if (pipe(fds) || dup2(fds[0], 0) < 0 ||
            dup2(open(cfile, O_WRONLY | O_CREAT | O_TRUNC, 0644), 1) < 0)
            _exit(126);
        char path[512];
        snprintf(path, sizeof(path), "%s/rdq", getenv("RDQ_BIN_DIR"));
        execl(path, "rdq", "-premote", watch, (char *)NULL); /* fds[1] held: no end of input */
        _exit(127);
    }
    (void)wfd;
    cr_assert(test_wait_file(cfile, "console line 3 ", 5000, text, sizeof(text)), "%s", text);
    expect_debugged(run_gdb(p, NULL, out, sizeof(out)), out);
    cr_expect(
        test_wait_file(cfile, "of the running kernel, costs $7\r\n[", 3000, text, sizeof(text)),
        "no console text after the debugger: %s", text);
    kill(watcher, SIGTERM);
    waitpid(watcher, NULL, 0);
    expect_console_only(text);
}

/* Console text, whole, and nothing of gdb's. */
static void expect_console_only(const char *text)
{
    cr_expect_null(strstr(text, "qSupported"), "gdb's packets on the console: %s", text);
    cr_expect_null(strstr(text, "$T0"), "a stop reply on the console: %s", text);
    cr_expect_null(strstr(text, "$OK#9a"), "a packet on the console: %s", text);
    cr_expect(strstr(text, "(+-) of the kernel"), "console text lost its + and -: %s", text);
    cr_expect(strstr(text, "costs $5, #1 of them\r\n"), "a '$' in the text lost: %s", text);
    cr_expect(strstr(text, "root@target:~$ ["), "a prompt lost: %s", text);
}

Test(kdsrv, allow_any_lets_a_client_name_any_link)
{
    unsigned p = test_free_ports(3);
    char hostport[64], stub_link[96];
    for (unsigned i = 1; i <= 2; i++) { /* one gdbserver for each session */
        snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", p + i);
        const char *stub[] = {"gdbserver", hostport, target(), NULL};
        spawn(stub, "gdbserver");
    }
    const char *more[] = {"-allow-any", NULL};
    start_kdsrv(p, more, 1);
    snprintf(stub_link, sizeof(stub_link), "tcp:server=127.0.0.1,port=%u", p + 1);
    expect_debugged(run_gdb(p, stub_link, out, sizeof(out)), out);
    /* as a foreign row lists a gdbstub: the same kind of link */
    snprintf(stub_link, sizeof(stub_link), "tcp:Port=%u,Foreign,Server=127.0.0.1", p + 2);
    expect_debugged(run_gdb(p, stub_link, out, sizeof(out)), out);
}

/* gdb's interrupt reaches a kgdboc target as the break-in: the stand-in drops a bare 0x03 (a
 * running kernel's console reads it as a key) and stops the program for the sequence only. */
Test(kdsrv, gdbs_interrupt_breaks_in_on_a_running_kgdboc_target)
{
    unsigned p = test_free_ports(1);
    const char *kg = getenv("RDQ_KGDBOC"), *spin = getenv("RDQ_SPIN");
    cr_assert(kg && spin, "RDQ_KGDBOC and RDQ_SPIN name the stand-in and the spinning program");
    const char *stand_in[] = {kg, line.a, "sysrq-g", spin, NULL};
    spawn(stand_in, "kgdboc");
    const char *more[] = {"-link", link_s, "-break-in", "sysrq-g", NULL};
    start_kdsrv(p, more, 1);
    char remote[640], file[600], log[192];
    snprintf(remote, sizeof(remote), "target remote | %s/rdq -premote tcp:server=127.0.0.1,port=%u",
             getenv("RDQ_BIN_DIR"), p);
    snprintf(file, sizeof(file), "file %s", spin);
    const char *gdb[] = {"gdb",
                         "-batch",
                         "-nx",
                         "-ex",
                         "set confirm off",
                         "-ex",
                         "set auto-connect-native off",
                         "-ex",
                         "set sysroot /",
                         "-ex",
                         remote,
                         "-ex",
                         file,
                         "-ex",
                         "continue",
                         "-ex",
                         "print spins > 0",
                         "-ex",
                         "kill",
                         NULL};
    pid_t g = spawn(gdb, "gdb");
    snprintf(log, sizeof(log), "%s/kgdboc.log", br.dir); /* where gdbserver puts its output */
    cr_assert(test_wait_file(log, "spinning", 15000, out, sizeof(out)), "%s", out);
    snprintf(log, sizeof(log), "%s/gdb.log", br.dir);
    cr_expect_eq(kill(g, SIGINT), 0);
    cr_expect(test_wait_file(log, "received signal SIGINT", 10000, out, sizeof(out)),
              "gdb's interrupt did not stop the target: %s", out);
    cr_expect(test_wait_file(log, "$1 = 1", 5000, out, sizeof(out)), "%s", out);
    test_stop(g, SIGKILL);
}

/* A tcp link whose name does not resolve (a name server that never answers) holds up only the
 * client that named it: another attaches to its serial link meanwhile, and the first is refused
 * with why once its time is up. */
Test(kdsrv, a_link_slow_to_connect_holds_up_no_other_client)
{
    unsigned p = test_free_ports(1);
    int dns = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    cr_assert(dns >= 0 && bind(dns, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              getsockname(dns, (struct sockaddr *)&sa, &salen) == 0);
    char servers[64], log[192], cmd[512];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", ntohs(sa.sin_port));
    setenv("RDQ_DNS_SERVERS", servers, 1);
    const char *more[] = {"-link", link_s, "-allow-any", NULL};
    start_kdsrv(p, more, 1);
    unsetenv("RDQ_DNS_SERVERS");
    snprintf(cmd, sizeof(cmd),
             "timeout 20 %s/rdq -premote tcp:server=127.0.0.1,port=%u -k "
             "tcp:server=gdbstub.nowhere.test,port=1234 </dev/null >%s/slow.out 2>&1 &",
             getenv("RDQ_BIN_DIR"), p, br.dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(log, sizeof(log), "%s/rdkdsrv.log", br.dir);
    cr_assert(test_wait_file(log, "client 1 from", 5000, out, sizeof(out)), "%s", out);
    int wfd;
    pid_t holder = hold_link(p, link_s, &wfd);
    cr_expect(test_wait_file(log, "client 2: link com:", 10000, out, sizeof(out)), "%s", out);
    cr_expect_null(strstr(out, "client 1 refused"), "the second waited for the first: %s", out);
    cr_expect(test_wait_file(log, "client 1 refused: tcp:Port=1234,Server=gdbstub.nowhere.test: ",
                             10000, out, sizeof(out)),
              "%s", out);
    snprintf(cmd, sizeof(cmd), "%s/slow.out", br.dir);
    cr_expect(test_wait_file(cmd, "gdbstub.nowhere.test: no answer from the name servers in time",
                             5000, out, sizeof(out)),
              "the client is not told why: %s", out);
    close(wfd);
    int st = test_wait_exit(holder, 10000);
    cr_expect_neq(st, -1, "the serial link's client did not end");
    if (st == -1) {
        kill(holder, SIGKILL);
        waitpid(holder, NULL, 0);
    }
    close(dns);
}

/* A session-layer connection to 127.0.0.1:port. */
static struct rdt_conn *dial_port(unsigned port)
{
    char t[64], err[RDT_ERR_MAX];
    struct rdt_conn *c;
    snprintf(t, sizeof(t), "tcp:server=127.0.0.1,port=%u", port);
    cr_assert_eq(test_connect(&c, t, NULL, err, sizeof(err)), 0, "%s: %s", t, err);
    return c;
}

/* One host (127.0.0.2, through a relay) takes every place it may: its next client is turned
 * away as busy, naming its address, while another host's is served. */
Test(kdsrv, one_host_cannot_take_every_place)
{
    unsigned p = test_free_ports(3), console = p + 1, relay = p + 2;
    char cons_t[64], listen[96], to[96];
    snprintf(cons_t, sizeof(cons_t), "tcp:port=%u", console);
    const char *more[] = {"-link", link_s, "-console", cons_t, NULL};
    start_kdsrv(p, more, 2);
    snprintf(listen, sizeof(listen), "TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr,fork", relay);
    snprintf(to, sizeof(to), "TCP:127.0.0.1:%u,bind=127.0.0.2", console);
    const char *socat[] = {"socat", listen, to, NULL};
    spawn(socat, "socat");
    cr_assert(test_wait_listening(relay, 5000), "socat does not listen");
    struct rdt_conn *held[32];
    for (int i = 0; i < 32; i++)
        held[i] = dial_port(relay); /* watchers of the console, all from 127.0.0.2 */
    char log[192], buf[4096];
    snprintf(log, sizeof(log), "%s/rdkdsrv.log", br.dir);
    cr_assert(
        test_wait_file(log, "client 32 from 127.0.0.2: console watcher", 10000, out, sizeof(out)),
        "%s", out);
    struct rdt_conn *more_c = dial_port(relay);
    test_read_until(more_c, "\n", buf, sizeof(buf), 5000);
    cr_expect(strstr(buf, "ERR busy: 32 clients from your address 127.0.0.2, the most one host "
                          "may have"),
              "the 33rd client of one host: \"%s\"", buf);
    rdt_conn_free(more_c);
    struct rdt_conn *other = dial_port(console); /* from 127.0.0.1 */
    const char text[] = "console text for another host\r\n";
    cr_assert_eq(write(line.sa, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    test_read_until(other, "another host", buf, sizeof(buf), 5000);
    cr_expect(strstr(buf, "console text for another host"), "another host is not served: %s", buf);
    cr_expect(test_wait_file(log, "turned away", 3000, out, sizeof(out)), "%s", out);
    rdt_conn_free(other);
    for (int i = 0; i < 32; i++)
        rdt_conn_free(held[i]);
}

/* Held text comes out while the console goes on: a '$' is held no longer than a packet could
 * take on the line, however busy the console is. */
Test(kdsrv, a_dollar_on_a_console_that_never_pauses_is_not_held_back)
{
    unsigned p = test_free_ports(2);
    char cons_t[64], buf[65536], text[128];
    snprintf(cons_t, sizeof(cons_t), "tcp:port=%u", p + 1);
    const char *more[] = {"-link", link_s, "-console", cons_t, NULL};
    start_kdsrv(p, more, 2);
    struct rdt_conn *w = dial_port(p + 1);
    const char price[] = "price $5 today\r\n";
    cr_assert_eq(write(line.sa, price, sizeof(price) - 1), (ssize_t)sizeof(price) - 1);
    size_t got = 0, n;
    buf[0] = '\0';
    bool seen = false;
    for (int i = 0; i < 40 && !seen; i++) { /* a line every 100 ms for 4 s, never a pause */
        int len = snprintf(text, sizeof(text), "[%4d] busy console\r\n", i);
        cr_assert_eq(write(line.sa, text, (size_t)len), len);
        if (rdt_conn_read_wait(w, buf + got, sizeof(buf) - 1 - got, &n, 100) == 0)
            got += n;
        buf[got] = '\0';
        seen = strstr(buf, "price $5 today\r\n[") != NULL;
    }
    cr_expect(seen, "the text after a '$' waited for the console to pause: %s", buf);
    rdt_conn_free(w);
}

/* A link's name with two addresses, the first tried silent (::1, which goes before IPv4: its
 * listener's backlog is full, so a connect waits): the second (127.0.0.2) gets its turn within
 * the link's time, and gdb debugs through it. Red when the first may take all of the time. */
Test(kdsrv, a_silent_first_address_leaves_time_for_the_next)
{
    unsigned p = test_free_ports(3), stub = p + 1;
    char hostport[64], record[96], k[96], listen_s[96], to[64];
    snprintf(hostport, sizeof(hostport), ":%u", p + 2); /* gdbserver binds every address */
    const char *gs[] = {"gdbserver", hostport, target(), NULL};
    spawn(gs, "gdbserver");
    snprintf(listen_s, sizeof(listen_s), "TCP-LISTEN:%u,bind=127.0.0.2,reuseaddr", stub);
    snprintf(to, sizeof(to), "TCP:127.0.0.1:%u", p + 2);
    const char *relay[] = {"socat", listen_s, to, NULL}; /* the stub on 127.0.0.2 only */
    spawn(relay, "socat");
    cr_assert(test_wait_listening(p + 2, 5000) && test_wait_listening(stub, 5000));
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
                              .sin6_port = htons((uint16_t)stub),
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int full = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, fill[4];
    setsockopt(full, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    cr_assert(bind(full, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(full, 0) == 0);
    for (int i = 0; i < 4; i++) { /* fill its backlog: what comes next is not answered */
        fill[i] = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    snprintf(record, sizeof(record), "--host-record=twoaddr.test,127.0.0.2,::1");
    const char *records[] = {record, NULL};
    pid_t dns = test_dnsmasq(records);
    const char *more[] = {"-allow-any", NULL};
    start_kdsrv(p, more, 1);
    unsetenv("RDQ_DNS_SERVERS");
    snprintf(k, sizeof(k), "tcp:server=twoaddr.test,port=%u", stub);
    expect_debugged(run_gdb(p, k, out, sizeof(out)), out);
    test_stop(dns, SIGTERM);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(full);
}

/* A named tcp link whose stub goes away: its client is ended and the server goes on. */
Test(kdsrv, a_link_that_closes_ends_its_client_only)
{
    unsigned p = test_free_ports(2);
    char listen[96], k[96], cmd[512];
    snprintf(listen, sizeof(listen), "TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr,fork", p + 1);
    const char *once[] = {"socat", listen, "SYSTEM:sleep 0.3", NULL};
    spawn(once, "socat");
    cr_assert(test_wait_listening(p + 1, 5000), "socat does not listen");
    const char *more[] = {"-link", link_s, "-allow-any", NULL};
    start_kdsrv(p, more, 1);
    snprintf(k, sizeof(k), "tcp:server=127.0.0.1,port=%u", p + 1);
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof(cmd),
                 "sleep 2 | timeout 10 rdq -premote tcp:server=127.0.0.1,port=%u -k %s", p, k);
        cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    }
    char log[192];
    snprintf(log, sizeof(log), "%s/rdkdsrv.log", br.dir);
    cr_expect(test_wait_file(log, "closed by the other end", 3000, out, sizeof(out)), "%s", out);
    stub_on_line(); /* and the next client is served */
    expect_debugged(run_gdb(p, NULL, out, sizeof(out)), out);
}

/* A clicon server calls the next client after each one: a client refused, then one debugged. */
Test(kdsrv, a_clicon_server_calls_again_after_each_client)
{
    unsigned p = test_free_ports(1);
    char t[64], cmd[512];
    snprintf(t, sizeof(t), "tcp:port=%u,clicon=127.0.0.1", p);
    const char *argv[] = {"rdkdsrv", "-t", t, "-link", link_s, NULL};
    spawn(argv, "rdkdsrv");
    snprintf(cmd, sizeof(cmd),
             "timeout 20 rdq -premote tcp:clicon=127.0.0.1,port=%u -timeout 8000 -k "
             "tcp:server=127.0.0.1,port=1 </dev/null",
             p);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, "not allowed"), "%s", out);
    stub_on_line();
    snprintf(cmd, sizeof(cmd),
             "timeout 30 gdb -batch -nx -ex 'set confirm off' -ex 'set auto-connect-native off' "
             "-ex 'set sysroot /' -ex 'target remote | rdq -premote "
             "tcp:clicon=127.0.0.1,port=%u -timeout 8000' -ex 'file %s' -ex 'break reached' "
             "-ex 'continue' -ex 'print answer' -ex 'maint print target-stack'",
             p, target());
    expect_debugged(test_run(cmd, out, sizeof(out), true), out);
}

Test(kdsrv, bad_links_and_help)
{
    cr_expect_eq(test_run("rdkdsrv -t tcp:port=1 -link com:port=/dev/ttyS0,baud=9600,channel=1",
                          out, sizeof(out), true),
                 2, "%s", out);
    cr_expect(strstr(out, "leave out channel="), "%s", out);
    cr_expect_eq(
        test_run("rdkdsrv -t tcp:port=1 -link npipe:server=h,pipe=x", out, sizeof(out), true), 2);
    cr_expect(strstr(out, "com:port=DEV,baud=N (a serial line) or tcp:server=HOST,port=N"), "%s",
              out);
    cr_expect_eq(
        test_run("rdq -premote tcp:server=127.0.0.1,port=1 -k ssl:x", out, sizeof(out), true), 2,
        "%s", out);
    cr_expect_eq(test_run("rdkdsrv -?", out, sizeof(out), true), 0);
    cr_expect(strstr(out, "-allow-any"), "%s", out);
}
