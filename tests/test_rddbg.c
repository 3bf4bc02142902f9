/* rddbg, the debugging server, end to end: real gdb debugging tests/data/target.c under rddbg,
 * joined by clients over the real transport (tests/rds_client.c speaks the session frames). */
#include "helpers.h"
#include "rds_client.h"
#include "session.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000

static struct test_broker br;
static char out[65536];
static char log_path[192];
static pid_t piped_pid; /* a rddbg started with a pipe on its stdin */
static int piped_in = -1;

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
    snprintf(log_path, sizeof(log_path), "%s/rddbg.log", br.dir);
}

static void teardown(void)
{
    if (piped_in >= 0)
        close(piped_in);
    piped_in = -1;
    if (piped_pid > 0) {
        kill(piped_pid, SIGTERM);
        waitpid(piped_pid, NULL, 0);
    }
    piped_pid = 0;
    test_stop_all();
    test_broker_stop(&br, SIGTERM);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br);
}

TestSuite(rddbg, .init = setup, .fini = teardown, .timeout = 60);

/* ---- Starting rddbg ---- */

/* rddbg's arguments: `opts` (NULL-terminated), then -- gdb on `prog` (RDQ_TARGET when NULL). */
static void argv_of(const char **argv, const char *const opts[], const char *prog)
{
    int n = 0;
    argv[n++] = "rddbg";
    for (int i = 0; opts[i]; i++)
        argv[n++] = opts[i];
    const char *gdb[] = {"--",
                         "gdb",
                         "-q",
                         "-nx",
                         "-ex",
                         "set confirm off",
                         "-ex",
                         "set pagination off",
                         prog ? prog : getenv("RDQ_TARGET"),
                         NULL};
    for (int i = 0; gdb[i]; i++)
        argv[n++] = gdb[i];
    argv[n] = NULL;
}

/* The client string of server `n` from the banner in the log. */
static void client_string(int n, char *cs, size_t len)
{
    char want[32];
    snprintf(want, sizeof(want), "%d) rdq -remote ", n);
    cr_assert(test_wait_file(log_path, want, WAIT_MS, out, sizeof(out)), "no banner line %d: %s", n,
              out);
    const char *p = strstr(out, want) + strlen(want);
    snprintf(cs, len, "%.*s", (int)strcspn(p, "\n"), p);
}

static pid_t start(const char *const opts[], const char *prog, char *cs, size_t len)
{
    const char *argv[40];
    argv_of(argv, opts, prog);
    pid_t pid = test_spawn(argv, log_path, 0);
    cr_assert_gt(pid, 0);
    client_string(0, cs, len);
    return pid;
}

/* The same with a pipe on rddbg's stdin (piped_in), as a console that types. */
static pid_t start_piped(const char *const opts[], char *cs, size_t len)
{
    const char *argv[40];
    char path[512];
    int fds[2];
    argv_of(argv, opts, NULL);
    snprintf(path, sizeof(path), "%s/rddbg", getenv("RDQ_BIN_DIR"));
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fds[0], 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(fds[0]);
    piped_pid = pid;
    piped_in = fds[1];
    client_string(0, cs, len);
    return pid;
}

static struct rdc *join(const char *cs, const char *user, bool observe, const char *pw)
{
    char err[512];
    struct rdc *c = rdc_join(cs, user, observe, pw, err, sizeof(err));
    cr_assert(c, "%s could not join: %s", user, err);
    return c;
}

static const char *const one_tcp[] = {"-server", NULL, NULL, NULL, NULL, NULL, NULL};

/* -server tcp:port=P (a free port), with `more` options after it. */
static void opts_tcp(const char **opts, char *ts, size_t len, unsigned port,
                     const char *const more[])
{
    snprintf(ts, len, "tcp:port=%u", port);
    int n = 0;
    opts[n++] = one_tcp[0];
    opts[n++] = ts;
    for (int i = 0; more && more[i]; i++)
        opts[n++] = more[i];
    opts[n] = NULL;
}

static pid_t start_tcp(const char *const more[], const char *prog, char *cs, size_t len,
                       unsigned *port)
{
    static char ts[64];
    const char *opts[16];
    unsigned p = test_free_ports(1);
    if (port)
        *port = p;
    opts_tcp(opts, ts, sizeof(ts), p, more);
    return start(opts, prog, cs, len);
}

/* ---- The shared session ---- */

Test(rddbg, two_clients_share_a_breakpoint_stop_and_a_value)
{
    char cs[512];
    start_tcp(NULL, NULL, cs, sizeof(cs), NULL);
    struct rdc *a = join(cs, "alice", false, NULL);
    cr_assert(strstr(a->welcome, "\"role\":\"control\""), "welcome: %s", a->welcome);
    cr_expect(strstr(a->welcome, "\"debugger\":\"gdb -q"), "welcome: %s", a->welcome);
    rdc_line(a, "break reached");
    cr_assert(rdc_wait(a, "Breakpoint 1 at", WAIT_MS), "no breakpoint: %s", a->text);
    struct rdc *b = join(cs, "bob", false, NULL);
    /* the newcomer first sees the recent output, and everyone hears of it */
    cr_expect(rdc_wait(b, "Breakpoint 1 at", WAIT_MS), "no replay: %s", b->text);
    cr_expect(rdc_wait(b, "[N] bob@testhost joined (2 clients)", WAIT_MS), "%s", b->text);
    cr_expect(rdc_wait(a, "[N] bob@testhost joined (2 clients)", WAIT_MS), "%s", a->text);
    rdc_line(b, "run");
    cr_expect(rdc_wait(a, "[N] bob@testhost: run", WAIT_MS), "no notice of bob's line: %s",
              a->text);
    cr_assert(rdc_wait(a, "Breakpoint 1, reached ()", WAIT_MS), "alice saw no stop: %s", a->text);
    cr_assert(rdc_wait(b, "Breakpoint 1, reached ()", WAIT_MS), "bob saw no stop: %s", b->text);
    rdc_line(a, "print answer");
    cr_expect(rdc_wait(a, "$1 = 42", WAIT_MS), "alice: %s", a->text);
    cr_expect(rdc_wait(b, "$1 = 42", WAIT_MS), "bob: %s", b->text);
    rdc_free(a);
    rdc_free(b);
}

Test(rddbg, a_client_leaving_does_not_end_the_session)
{
    char cs[512];
    start_tcp(NULL, NULL, cs, sizeof(cs), NULL);
    struct rdc *a = join(cs, "alice", false, NULL);
    struct rdc *b = join(cs, "bob", false, NULL);
    cr_assert(rdc_wait(a, "bob@testhost joined (2 clients)", WAIT_MS), "%s", a->text);
    rdc_free(b);
    cr_expect(rdc_wait(a, "[N] bob@testhost left (1 clients)", WAIT_MS), "%s", a->text);
    rdc_line(a, "print 6*7");
    cr_expect(rdc_wait(a, "= 42", WAIT_MS), "the session ended with bob: %s", a->text);
    struct rdc *c = join(cs, "carol", false, NULL);
    rdc_line(c, ".detach");
    cr_expect(rdc_wait(a, "[N] carol@testhost left (1 clients)", WAIT_MS), "%s", a->text);
    cr_expect(!a->ended);
    rdc_free(c);
    rdc_free(a);
}

Test(rddbg, gdb_quitting_ends_every_client_and_rddbg_with_its_status)
{
    char cs[512];
    pid_t pid = start_tcp(NULL, NULL, cs, sizeof(cs), NULL);
    struct rdc *a = join(cs, "alice", false, NULL);
    struct rdc *b = join(cs, "bob", true, NULL);
    rdc_line(a, "quit 3");
    cr_expect(rdc_wait_end(a, WAIT_MS), "alice not ended: %s", a->text);
    cr_expect(rdc_wait_end(b, WAIT_MS), "bob not ended: %s", b->text);
    cr_expect_str_eq(a->end, "the debugger ended (exit status 3)");
    cr_expect_str_eq(b->end, "the debugger ended (exit status 3)");
    cr_expect_eq(test_wait_exit(pid, WAIT_MS), 3, "rddbg did not exit with gdb's status");
    cr_expect(test_wait_rows("localhost", 0, WAIT_MS, out, sizeof(out)), "still listed: %s", out);
    rdc_free(a);
    rdc_free(b);
}

Test(rddbg, a_bad_frame_ends_that_client_only_and_limits_hold)
{
    char cs[512];
    start_tcp(NULL, NULL, cs, sizeof(cs), NULL);
    struct rdc *a = join(cs, "alice", false, NULL);
    struct rdc *b = join(cs, "bob", false, NULL);
    char big[RDS_LINE_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    rdc_line(a, big);
    cr_expect(rdc_wait(a, "[N] a line longer than 4096 bytes is refused", WAIT_MS), "%s", a->text);
    uint8_t bad[] = {'Z', 0, 0};
    rdt_conn_write_all(b->conn, bad, sizeof(bad), 1000);
    cr_expect(rdc_wait_end(b, WAIT_MS), "bob goes on after a bad frame: %s", b->text);
    cr_expect(strstr(b->end, "not a frame"), "why: %s", b->end);
    cr_expect(rdc_wait(a, "bob@testhost was dropped", WAIT_MS), "%s", a->text);
    rdc_line(a, "print 6*7");
    cr_expect(rdc_wait(a, "= 42", WAIT_MS), "the session ended with bob: %s", a->text);
    rdc_free(a);
    rdc_free(b);
}

/* One host (127.0.0.2, through a relay) takes every place it may: its next client is told why,
 * and another host still joins and debugs. */
Test(rddbg, one_host_cannot_take_every_place)
{
    char cs[512], relay_cs[96], listen[96], to[96];
    unsigned port;
    start_tcp(NULL, NULL, cs, sizeof(cs), &port);
    unsigned relay = test_free_ports(1);
    snprintf(listen, sizeof(listen), "TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr,fork", relay);
    snprintf(to, sizeof(to), "TCP:127.0.0.1:%u,bind=127.0.0.2", port);
    const char *socat[] = {"socat", listen, to, NULL};
    char socat_log[192];
    snprintf(socat_log, sizeof(socat_log), "%s/socat.log", br.dir);
    cr_assert_gt(test_spawn(socat, socat_log, 0), 0);
    cr_assert(test_wait_listening(relay, 5000), "socat does not listen");
    snprintf(relay_cs, sizeof(relay_cs), "tcp:server=127.0.0.1,port=%u", relay);
    struct rdc *held[16];
    for (int i = 0; i < 16; i++)
        held[i] = join(relay_cs, "flood", true, NULL);
    char err[512];
    struct rdc *more = rdc_join(relay_cs, "more", true, NULL, err, sizeof(err));
    cr_expect_null(more, "a 17th client of one host joined");
    cr_expect(strstr(err, "busy: 16 clients from your address 127.0.0.2, the most one host may "
                          "have"),
              "%s", err);
    rdc_free(more);
    struct rdc *a = join(cs, "alice", false, NULL); /* from 127.0.0.1 */
    rdc_line(a, "print 6*7");
    cr_expect(rdc_wait(a, "= 42", WAIT_MS), "another host is not served: %s", a->text);
    rdc_free(a);
    for (int i = 0; i < 16; i++)
        rdc_free(held[i]);
}

/* A client that never reads is dropped once 4 MiB wait for it; the others get all of it. */
Test(rddbg, a_client_that_does_not_read_is_dropped_and_holds_up_nobody)
{
    char cs[512];
    start_tcp(NULL, NULL, cs, sizeof(cs), NULL);
    struct rdc *a = join(cs, "alice", false, NULL);
    struct rdc *b = join(cs, "bob", true, NULL); /* and never reads again */
    int small = 4096; /* his socket holds little: what waits, waits in rddbg */
    cr_assert_eq(setsockopt(rdt_conn_fd(b->conn), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    /* 32 MB of output: more than bob's socket and his 4 MiB can hold */
    rdc_line(a, "shell head -c 32000000 /dev/zero | tr '\\0' x");
    const char *gone = "[N] bob@testhost was dropped: it did not read its output";
    bool dropped = false;
    for (int i = 0; i < 600 && a->output < 32000000; i++) {
        rdc_drain(a, 50);
        dropped = dropped || strstr(a->text, gone);
        a->len = a->mark = 0; /* the text is smaller than the flood: look, then let it go */
        a->text[0] = '\0';
    }
    cr_expect_geq(a->output, 32000000, "alice got %zu bytes", a->output);
    cr_expect(dropped || rdc_wait(a, gone, WAIT_MS), "bob was not dropped");
    rdc_line(a, "print 6*7");
    cr_expect(rdc_wait(a, "= 42", WAIT_MS), "%s", a->text);
    rdc_free(a);
    rdc_free(b);
}

/* A connection that never joins is closed after 10 s, with why. */
Test(rddbg, a_connection_that_never_joins_is_closed)
{
    char cs[512], err[RDT_ERR_MAX], buf[1024];
    start_tcp(NULL, NULL, cs, sizeof(cs), NULL);
    struct rdt_conn *c;
    cr_assert_eq(test_connect(&c, cs, NULL, err, sizeof(err)), 0, "%s", err);
    ssize_t n = test_read_until(c, "no join within 10 s", buf, sizeof(buf), 15000);
    cr_expect(n > 0 && memmem(buf, (size_t)n, "no join within 10 s", 19), "%zd bytes", n);
    rdt_conn_free(c);
}

/* ---- rddbg's own commands ---- */

Test(rddbg, servers_and_endsrv_change_the_rows_and_the_listing_at_once)
{
    char cs[512], cmd[64], want[128];
    unsigned p0, p1 = test_free_ports(1);
    start_tcp(NULL, NULL, cs, sizeof(cs), &p0);
    struct rdc *a = join(cs, "alice", false, NULL);
    snprintf(cmd, sizeof(cmd), ".server tcp:port=%u", p1);
    rdc_line(a, cmd);
    snprintf(want, sizeof(want), "[N] 1) rdq -remote tcp:Port=%u,Server=", p1);
    cr_assert(rdc_wait(a, want, WAIT_MS), "no client string: %s", a->text);
    rdc_line(a, ".servers");
    snprintf(want, sizeof(want), "[N] 0 - Debugger Server - tcp:Port=%u\n", p0);
    cr_expect(rdc_wait(a, want, WAIT_MS), "%s", a->text);
    snprintf(want, sizeof(want), "[N] 1 - Debugger Server - tcp:Port=%u\n", p1);
    cr_expect(rdc_wait(a, want, WAIT_MS), "%s", a->text);
    cr_expect(test_wait_rows("localhost", 2, WAIT_MS, out, sizeof(out)), "%s", out);
    /* a client through server 1 stays after .endsrv 1 */
    char cs1[512];
    snprintf(cs1, sizeof(cs1), "tcp:Port=%u,Server=localhost", p1);
    struct rdc *b = join(cs1, "bob", false, NULL);
    rdc_line(a, ".endsrv 1");
    cr_expect(rdc_wait(a, "[N] server 1 disabled", WAIT_MS), "%s", a->text);
    rdc_line(a, ".servers");
    cr_expect(rdc_wait(a, "[N] 1 - <Disabled>\n", WAIT_MS), "%s", a->text);
    cr_expect(test_wait_rows("localhost", 1, 1000, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want), "Debugger Server - tcp:Port=%u\n", p0);
    cr_expect(strstr(out, want), "server 0 not listed: %s", out);
    char err[512];
    cr_expect_null(rdc_join(cs1, "carol", false, NULL, err, sizeof(err)),
                   "server 1 still takes connections");
    rdc_line(b, "print 6*7");
    cr_expect(rdc_wait(b, "= 42", WAIT_MS), "bob's session ended with server 1: %s", b->text);
    /* none of it reached gdb */
    cr_expect(!strstr(a->text, "Undefined command"), "%s", a->text);
    rdc_free(a);
    rdc_free(b);
}

Test(rddbg, clients_lists_each_client_and_marks_observers)
{
    char cs[512], want[128];
    unsigned port;
    start_tcp(NULL, NULL, cs, sizeof(cs), &port);
    struct rdc *a = join(cs, "alice", false, NULL);
    struct rdc *b = join(cs, "bob", true, NULL);
    cr_expect(strstr(b->welcome, "\"role\":\"observe\""), "%s", b->welcome);
    rdc_line(a, ".clients");
    cr_assert(rdc_wait(a, "[N] testhost\\alice, last active ", WAIT_MS), "%s", a->text);
    const char *row = a->text + a->mark;
    int hh, mm, ss;
    cr_expect_eq(sscanf(row, "%2d:%2d:%2d", &hh, &mm, &ss), 3, "no time: %s", row);
    snprintf(want, sizeof(want), ", server 0 (tcp:Port=%u) from 127.0.0.1", port);
    cr_expect(rdc_wait(a, want, WAIT_MS), "%s", a->text);
    cr_expect(rdc_wait(a, "[N] testhost\\bob, last active ", WAIT_MS), "%s", a->text);
    cr_expect(rdc_wait(a, " (observer)\n", WAIT_MS), "%s", a->text);
    cr_expect_eq(test_count(a->text, "(observer)"), 1, "%s", a->text);
    rdc_free(a);
    rdc_free(b);
}

/* ---- Observers and the control password ---- */

Test(rddbg, an_observer_sees_the_stop_and_its_input_never_reaches_gdb)
{
    char cs[512];
    start_tcp(NULL, NULL, cs, sizeof(cs), NULL);
    struct rdc *a = join(cs, "alice", false, NULL);
    struct rdc *o = join(cs, "olga", true, NULL);
    cr_expect(rdc_wait(a, "olga@testhost joined as an observer (2 clients)", WAIT_MS), "%s",
              a->text);
    rdc_line(a, "break reached");
    rdc_line(a, "run");
    cr_assert(rdc_wait(o, "Breakpoint 1, reached ()", WAIT_MS), "olga saw no stop: %s", o->text);
    rdc_line(o, "continue");
    cr_expect(rdc_wait(o, "[N] you joined as an observer: input is refused", WAIT_MS), "%s",
              o->text);
    rdc_interrupt(o);
    cr_expect(rdc_wait(o, "[N] you joined as an observer: input is refused", WAIT_MS), "%s",
              o->text);
    rdc_line(a, "print answer");
    cr_expect(rdc_wait(a, "$1 = 42", WAIT_MS), "%s", a->text);
    cr_expect(rdc_wait(o, "$1 = 42", WAIT_MS), "%s", o->text);
    cr_expect(!strstr(a->text, "Continuing."), "olga's continue reached gdb: %s", a->text);
    cr_expect(!strstr(a->text, "olga@testhost: continue"), "%s", a->text);
    cr_expect(!strstr(a->text, "interrupts"), "%s", a->text);
    rdc_free(a);
    rdc_free(o);
}

Test(rddbg, with_a_control_password_only_who_proves_it_controls)
{
    char cs[512];
    const char *more[] = {"-control-password", "Sesame42", NULL};
    pid_t pid = start_tcp(more, NULL, cs, sizeof(cs), NULL);
    struct rdc *n = join(cs, "nopw", false, NULL);
    cr_expect(strstr(n->welcome, "\"role\":\"observe\""), "%s", n->welcome);
    cr_expect(rdc_wait(n,
                       "[N] you joined as an observer: control needs the session's control "
                       "password",
                       WAIT_MS),
              "%s", n->text);
    struct rdc *w = join(cs, "wrong", false, "Sesame43");
    cr_expect(strstr(w->welcome, "\"role\":\"observe\""), "%s", w->welcome);
    cr_expect(rdc_wait(w, "the control password is wrong", WAIT_MS), "%s", w->text);
    struct rdc *r = join(cs, "right", false, "Sesame42");
    cr_expect(strstr(r->welcome, "\"role\":\"control\""), "%s", r->welcome);
    rdc_line(n, "print 1000+1");
    cr_expect(rdc_wait(n, "input is refused", WAIT_MS), "%s", n->text);
    rdc_line(r, "print 6*7");
    cr_expect(rdc_wait(n, "= 42", WAIT_MS), "%s", n->text);
    cr_expect(!strstr(r->text, "1001"), "an observer's line reached gdb: %s", r->text);
    /* never printed, and gone from the command line */
    cr_expect(!test_wait_file(log_path, "Sesame42", 10, out, sizeof(out)), "%s", out);
    char path[64], cmdline[4096] = "";
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    size_t len = f ? fread(cmdline, 1, sizeof(cmdline) - 1, f) : 0;
    if (f)
        fclose(f);
    cr_expect(len > 0 && !memmem(cmdline, len, "Sesame42", 8), "in /proc/pid/cmdline");
    rdc_free(n);
    rdc_free(w);
    rdc_free(r);
}

/* ---- The console, the banner, -noio, interrupts ---- */

Test(rddbg, the_banner_names_every_server_and_each_is_listed)
{
    char cs0[512], cs1[512], ts[64], want[256], host[256] = "";
    unsigned port = test_free_ports(1);
    snprintf(ts, sizeof(ts), "tcp:port=%u", port);
    const char *opts[] = {"-server", ts, "-server", "npipe:pipe=dbg%d", NULL};
    pid_t pid = start(opts, NULL, cs0, sizeof(cs0));
    client_string(1, cs1, sizeof(cs1));
    gethostname(host, sizeof(host));
    cr_expect(strstr(out, "Server started.  Client can connect with any of these command "
                          "lines\n0) rdq -remote "),
              "%s", out);
    snprintf(want, sizeof(want), "tcp:Port=%u,Server=%s", port, host);
    cr_expect_str_eq(cs0, want);
    snprintf(want, sizeof(want), "npipe:Pipe=dbg%d,Server=%s", (int)pid, host);
    cr_expect_str_eq(cs1, want);
    cr_expect(test_wait_rows("localhost", 2, WAIT_MS, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want), "Debugger Server - npipe:Pipe=dbg%d\n", (int)pid);
    cr_expect(strstr(out, want), "%s", out);
    struct rdc *a = join(cs1, "alice", false, NULL);
    rdc_line(a, "print 6*7");
    cr_expect(rdc_wait(a, "= 42", WAIT_MS), "through the pipe: %s", a->text);
    rdc_free(a);
}

Test(rddbg, the_console_types_into_the_session_and_shows_it)
{
    char cs[512], ts[64];
    const char *opts[4];
    opts_tcp(opts, ts, sizeof(ts), test_free_ports(1), NULL);
    start_piped(opts, cs, sizeof(cs));
    struct rdc *a = join(cs, "alice", false, NULL);
    cr_assert(write(piped_in, "print 1000+1\n", 13) == 13);
    cr_expect(rdc_wait(a, "@", WAIT_MS) && rdc_wait(a, ": print 1000+1\n", WAIT_MS),
              "no notice of the console's line: %s", a->text);
    cr_expect(rdc_wait(a, "= 1001", WAIT_MS), "%s", a->text);
    rdc_line(a, "print 2000+2");
    cr_expect(test_wait_file(log_path, "= 2002", WAIT_MS, out, sizeof(out)),
              "the console does not show the session: %s", out);
    cr_expect(strstr(out, "alice@testhost: print 2000+2"), "%s", out);
    cr_expect(strstr(out, "alice@testhost joined (1 clients)"), "%s", out);
    /* the console's end leaves the session to the clients */
    close(piped_in);
    piped_in = -1;
    rdc_line(a, "print 3000+3");
    cr_expect(rdc_wait(a, "= 3003", WAIT_MS), "%s", a->text);
    cr_expect(!a->ended);
    rdc_free(a);
}

Test(rddbg, noio_neither_reads_the_console_nor_shows_the_session)
{
    char cs[512], ts[64];
    const char *opts[4];
    const char *more[] = {"-noio", NULL};
    opts_tcp(opts, ts, sizeof(ts), test_free_ports(1), more);
    start_piped(opts, cs, sizeof(cs));
    struct rdc *a = join(cs, "alice", false, NULL);
    cr_assert(write(piped_in, "print 1000+1\n", 13) == 13);
    rdc_line(a, "print 2000+2");
    cr_expect(rdc_wait(a, "= 2002", WAIT_MS), "%s", a->text);
    rdc_drain(a, 300);
    cr_expect(!strstr(a->text, "1001"), "the console's line reached gdb: %s", a->text);
    test_wait_file(log_path, "Server started", 10, out, sizeof(out));
    cr_expect(!strstr(out, "2002") && !strstr(out, "alice"), "the console shows: %s", out);
    rdc_free(a);
}

Test(rddbg, an_interrupt_stops_a_running_program)
{
    char cs[512];
    start_tcp(NULL, getenv("RDQ_SPIN"), cs, sizeof(cs), NULL);
    struct rdc *a = join(cs, "alice", false, NULL);
    struct rdc *b = join(cs, "bob", true, NULL);
    rdc_line(a, "run");
    cr_assert(rdc_wait(a, "spinning", WAIT_MS), "%s", a->text);
    usleep(100000);
    rdc_interrupt(a);
    cr_expect(rdc_wait(b, "[N] alice@testhost interrupts the debugger", WAIT_MS), "%s", b->text);
    cr_expect(rdc_wait(a, "Program received signal SIGINT", WAIT_MS), "not stopped: %s", a->text);
    cr_expect(rdc_wait(b, "Program received signal SIGINT", WAIT_MS), "%s", b->text);
    rdc_line(a, "print spins > 0");
    cr_expect(rdc_wait(a, "= 1", WAIT_MS), "%s", a->text);
    rdc_free(a);
    rdc_free(b);
}
