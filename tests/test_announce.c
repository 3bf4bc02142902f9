/* rdsrv -announce (a foreign server made discoverable while it runs) and rdq -premote -forward
 * (a local port relayed to a server), end to end with real gdb and gdbserver. */
#include "helpers.h"
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SPAWNED 8

static struct test_broker br;
static char out[65536];
static pid_t spawned[MAX_SPAWNED]; /* stopped by teardown */

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    memset(spawned, 0, sizeof(spawned));
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
}

static int wait_exit(pid_t pid, int ms);

static void teardown(void)
{
    for (int i = 0; i < MAX_SPAWNED; i++) {
        pid_t pid = spawned[i];
        if (pid > 0 && (kill(pid, SIGTERM), wait_exit(pid, 3000)) < 0)
            test_stop(pid, SIGKILL); /* its command gets SIGTERM from rdsrv's end */
    }
    test_broker_stop(&br, SIGTERM);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br);
}

TestSuite(announce, .init = setup, .fini = teardown, .timeout = 150);

/* Spawns a program with argv, output to <broker dir>/<name>.log. */
static pid_t spawn(const char *const argv[], const char *name)
{
    char log[192];
    snprintf(log, sizeof(log), "%s/%s.log", br.dir, name);
    pid_t pid = test_spawn(argv, log, 0);
    cr_assert_gt(pid, 0);
    for (int i = 0; i < MAX_SPAWNED; i++)
        if (!spawned[i]) {
            spawned[i] = pid;
            return pid;
        }
    cr_assert_fail("too many programs in one test");
    return -1;
}

static void forget(pid_t pid)
{
    for (int i = 0; i < MAX_SPAWNED; i++)
        if (spawned[i] == pid)
            spawned[i] = 0;
}

/* Waits up to `ms` for `pid` to exit: its exit status (128+N for signal N), or -1. */
static int wait_exit(pid_t pid, int ms)
{
    int st;
    for (int waited = 0; waited <= ms; waited += 10) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            forget(pid);
            test_stop(pid, 0); /* reaped: the harness forgets it too */
            return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
        }
        usleep(10000);
    }
    return -1;
}

static bool wait_log(const char *name, const char *needle, int ms, char *buf, size_t len)
{
    char path[192];
    snprintf(path, sizeof(path), "%s/%s", br.dir, name);
    return test_wait_file(path, needle, ms, buf, len);
}

/* The pid in "Server announced: ... (NAME, pid N)" of a log. */
static pid_t announced_pid(const char *log)
{
    char buf[4096];
    cr_assert(wait_log(log, "Server announced: ", 5000, buf, sizeof(buf)), "%s", buf);
    const char *p = strstr(strstr(buf, "Server announced: "), ", pid ");
    int pid = 0;
    cr_assert(p && sscanf(p, ", pid %d)", &pid) == 1 && pid > 0, "%s", buf);
    return (pid_t)pid;
}

static bool alive(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    return access(path, F_OK) == 0;
}

/* ---- rdsrv -announce ---- */

/* rdsrv -announce tcp:port=P -kind process -- gdbserver :P RDQ_TARGET, log <name>.log, once
 * gdbserver listens; *port gets P. */
static pid_t start_gdbserver(const char *name, unsigned *port)
{
    const char *target = getenv("RDQ_TARGET");
    cr_assert_not_null(target);
    unsigned p = test_free_ports(1);
    char t[64], listen[32], log[64], buf[8192];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    snprintf(listen, sizeof(listen), ":%u", p);
    snprintf(log, sizeof(log), "%s.log", name);
    const char *argv[] = {"rdsrv", "-announce", t,      "-kind", "process",
                          "--",    "gdbserver", listen, target,  NULL};
    pid_t s = spawn(argv, name);
    cr_assert(wait_log(log, "Listening on port", 5000, buf, sizeof(buf)), "%s", buf);
    *port = p;
    return s;
}

/* gdb, remote only, on the program gdbserver started: `target remote SPEC`, a stop in reached,
 * answer printed, then on to the program's end. */
static const char *gdb_remote(const char *spec, char *buf, size_t len)
{
    const char *target = getenv("RDQ_TARGET");
    cr_assert_not_null(target);
    snprintf(buf, len,
             "timeout 60 gdb -batch -nx -ex 'set confirm off' -ex 'set auto-connect-native off' "
             "-ex \"target remote %s\" -ex 'file %s' -ex 'break reached' -ex 'continue' "
             "-ex 'print answer' -ex 'continue'",
             spec, target);
    return buf;
}

static void expect_debugged(const char *gdb_out);
static unsigned start_forward(const char *client, const char *listen, const char *timeout,
                              const char *name, pid_t *pid, char *addr, size_t alen);

/* The program ran under gdbserver, driven by a client that connected to it (no native run
 * makes gdbserver say so), and gdbserver, then rdsrv, exited with it. */
static void expect_gdbserver_served(const char *name, pid_t s)
{
    char log[8192], path[64];
    cr_expect(test_wait_rows("localhost", 0, 1000, out, sizeof(out)), "still listed: %s", out);
    cr_expect_eq(wait_exit(s, 5000), 0);
    snprintf(path, sizeof(path), "%s.log", name);
    cr_expect(wait_log(path, "Remote debugging from host 127.0.0.1", 0, log, sizeof(log)),
              "gdbserver did not see gdb: %s", log);
    cr_expect(strstr(log, ") exited with status 0; withdrawn"), "%s", log);
}

/* gdb through `target remote SPEC` debugs the program of gdbserver `s` (rdsrv's log <name>.log)
 * to its end; nothing from rdq is in gdb's output. */
static void debug_through(const char *spec, const char *name, pid_t s)
{
    char cmd[2048];
    int rc = test_run(gdb_remote(spec, cmd, sizeof(cmd)), out, sizeof(out), true);
    cr_expect_eq(rc, 0, "gdb: %s", out);
    expect_debugged(out);
    cr_expect_null(strstr(out, "rdq:"), "rdq complained: %s", out);
    expect_gdbserver_served(name, s);
}

/* The client string of the only row of rdq -browse -list for this host, as it is listed. */
static void listed_client(char *buf, size_t len)
{
    int rc = test_run("timeout 10 rdq -browse -list -no-lan -no-config -host localhost", out,
                      sizeof(out), false);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_eq(test_count(out, "\n"), 1, "not one row: %s", out);
    const char *tab = strrchr(out, '\t');
    cr_assert(tab && strncmp(out, "localhost\tRemote Process Server\t", 32) == 0, "%s", out);
    snprintf(buf, len, "%.*s", (int)strcspn(tab + 1, "\n"), tab + 1);
}

Test(announce, gdbserver_is_listed_as_foreign_debugged_directly_and_withdrawn_when_it_exits)
{
    unsigned p;
    char want[128], spec[64];
    pid_t s = start_gdbserver("gs", &p);
    snprintf(want, sizeof(want),
             "Servers on localhost:\nRemote Process Server - tcp:Port=%u,Foreign\n", p);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    cr_expect_str_eq(out, want);
    snprintf(spec, sizeof(spec), "localhost:%u", p);
    /* the program ends, so gdbserver does (with 0): the row goes at once, rdsrv exits so */
    debug_through(spec, "gs", s);
    cr_expect(wait_log("gs.log", "gdbserver (pid ", 0, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want),
             "Server announced: Remote Process Server - tcp:Port=%u,Foreign "
             "(gdbserver, pid ",
             p);
    cr_expect(strstr(out, want), "%s", out);
}

Test(announce, a_listed_foreign_row_is_debugged_through_rdq_premote_as_it_is_listed)
{
    unsigned p;
    char want[128], client[256], spec[320];
    pid_t s = start_gdbserver("gs", &p);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    listed_client(client, sizeof(client));
    snprintf(want, sizeof(want), "tcp:Port=%u,Foreign,Server=localhost", p);
    cr_expect_str_eq(client, want);
    /* the same in -json, flagged */
    cr_assert_eq(test_qr("localhost -json", out, sizeof(out)), 0, "%s", out);
    snprintf(want, sizeof(want), "\"client\": \"tcp:Port=%u,Foreign,Server=localhost\"", p);
    cr_expect(strstr(out, want), "%s", out);
    cr_expect(strstr(out, "\"foreign\": true"), "%s", out);
    /* gdb reaches gdbserver through rdq, which relays its bytes as they are */
    snprintf(spec, sizeof(spec), "| rdq -premote '%s'", client);
    debug_through(spec, "gs", s);
}

Test(announce, forward_relays_a_listed_foreign_row_to_plain_gdb)
{
    unsigned p;
    char client[256], spec[64], log[8192];
    pid_t fwd, s = start_gdbserver("gs", &p);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    listed_client(client, sizeof(client));
    unsigned port = start_forward(client, "0", NULL, "fwd", &fwd, NULL, 0);
    snprintf(spec, sizeof(spec), "localhost:%u", port);
    debug_through(spec, "gs", s);
    cr_expect(wait_log("fwd.log", "ended", 5000, log, sizeof(log)), "%s", log);
    cr_expect(strstr(log, ": through to the server\n"), "%s", log);
    cr_expect(strstr(log, ",Foreign,Server=localhost"), "%s", log);
    kill(fwd, SIGTERM);
    cr_expect_eq(wait_exit(fwd, 5000), 0, "rdq did not end with SIGTERM");
}

Test(announce, rdq_servers_are_listed_as_ever_and_not_foreign)
{
    unsigned p = test_free_ports(1);
    char t[64], want[128];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    spawn(argv, "cat");
    snprintf(want, sizeof(want), "Servers on localhost:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    cr_expect_str_eq(out, want);
    cr_assert_eq(test_qr("localhost -json", out, sizeof(out)), 0, "%s", out);
    cr_expect(strstr(out, "\"foreign\": false"), "%s", out);
    cr_expect_null(strstr(out, "Foreign"), "%s", out);
}

Test(announce, the_exit_status_of_the_command_is_passed_on)
{
    const char *argv[] = {"rdsrv", "-announce", "tcp:port=9",        "-kind", "kd", "--",
                          "sh",    "-c",        "sleep 0.3; exit 7", NULL};
    pid_t s = spawn(argv, "seven");
    cr_expect_eq(wait_exit(s, 5000), 7);
    wait_log("broker.log", "gone:", 2000, out, sizeof(out));
    cr_expect(strstr(out, "registered: Remote Kernel Debugger Server - tcp:Port=9"), "%s", out);
    cr_expect(strstr(out, "gone: Remote Kernel Debugger Server - tcp:Port=9"), "%s", out);
}

/* `sig` to rdsrv reaches its command (sleep 100, ended by it): rdsrv exits 128+sig, the row
 * goes, and the command is gone too. */
static void expect_signal_passed(int sig)
{
    unsigned p = test_free_ports(1);
    char t[64], name[32], log[40];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    snprintf(name, sizeof(name), "sig%d", sig);
    snprintf(log, sizeof(log), "sig%d.log", sig);
    const char *argv[] = {"rdsrv", "-announce", t, "-kind", "process", "--", "sleep", "100", NULL};
    pid_t s = spawn(argv, name);
    pid_t cmd = announced_pid(log);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    kill(s, sig);
    cr_expect_eq(wait_exit(s, 5000), 128 + sig, "signal %d", sig);
    cr_expect(test_wait_rows("localhost", 0, 1000, out, sizeof(out)), "still listed: %s", out);
    cr_expect_not(alive(cmd), "sleep (pid %d) outlived rdsrv", (int)cmd);
}

Test(announce, sigterm_and_the_others_reach_the_command)
{
    expect_signal_passed(SIGTERM);
    expect_signal_passed(SIGINT);
    expect_signal_passed(SIGHUP);
    expect_signal_passed(SIGUSR1);
}

Test(announce, a_killed_rdsrv_takes_its_command_along)
{
    unsigned p = test_free_ports(1);
    char t[64];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[] = {"rdsrv", "-announce", t, "-kind", "process", "--", "sleep", "100", NULL};
    pid_t s = spawn(argv, "killed");
    pid_t cmd = announced_pid("killed.log");
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    kill(s, SIGKILL);
    cr_expect_eq(wait_exit(s, 5000), 128 + SIGKILL);
    cr_expect(test_wait_rows("localhost", 0, 1000, out, sizeof(out)), "still listed: %s", out);
    for (int i = 0; i < 200 && alive(cmd); i++)
        usleep(10000);
    cr_expect_not(alive(cmd), "sleep (pid %d) outlived a killed rdsrv", (int)cmd);
}

Test(announce, the_three_kinds_are_listed_by_their_names_and_filtered)
{
    unsigned p = test_free_ports(3);
    char t[3][64], want[512];
    const char *kinds[] = {"process", "kd", "debugger"};
    for (int i = 0; i < 3; i++) {
        snprintf(t[i], sizeof(t[i]), "tcp:port=%u", p + (unsigned)i);
        const char *argv[] = {"rdsrv",  "-announce", t[i],    "-kind", kinds[i], "-desc",
                              kinds[i], "--",        "sleep", "100",   NULL};
        spawn(argv, kinds[i]);
    }
    cr_assert(test_wait_rows("localhost", 3, 5000, out, sizeof(out)), "%s", out);
    const char *titles[] = {"Remote Process Server", "Remote Kernel Debugger Server",
                            "Debugger Server"};
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof(want), "\n%s - tcp:Port=%u,Foreign\n", titles[i], p + (unsigned)i);
        cr_expect(strstr(out, want), "no %s row: %s", titles[i], out);
    }
    cr_assert_eq(test_qr("localhost -kind debugger", out, sizeof(out)), 0, "%s", out);
    snprintf(want, sizeof(want), "Servers on localhost:\nDebugger Server - tcp:Port=%u,Foreign\n",
             p + 2);
    cr_expect_str_eq(out, want);
    cr_assert_eq(test_qr("localhost -kind remote", out, sizeof(out)), 0, "%s", out);
    cr_expect_eq(test_count(out, "\n"), 3, "%s", out);
    cr_expect_null(strstr(out, "\nDebugger Server"), "%s", out);
    snprintf(want, sizeof(want), "Remote Process Server - tcp:Port=%u,Foreign\n", p);
    cr_expect(strstr(out, want), "%s", out);
    snprintf(want, sizeof(want), "Remote Kernel Debugger Server - tcp:Port=%u,Foreign\n", p + 1);
    cr_expect(strstr(out, want), "%s", out);
}

Test(announce, hidden_is_registered_but_never_listed)
{
    unsigned p = test_free_ports(1);
    char t[64];
    snprintf(t, sizeof(t), "tcp:port=%u,hidden", p);
    const char *argv[] = {"rdsrv", "-announce", t, "-kind", "process", "--", "sleep", "100", NULL};
    spawn(argv, "hidden");
    cr_assert(wait_log("broker.log", "registered:", 5000, out, sizeof(out)), "%s", out);
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0, "%s", out);
    cr_expect_str_eq(out, "Servers on localhost:\n");
    cr_expect(wait_log("hidden.log", "hidden: never listed", 0, out, sizeof(out)), "%s", out);
}

/* Runs rdsrv with `args` (bounded) into out. */
static int rdsrv_run(const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "timeout 10 rdsrv %s", args);
    return test_run(cmd, out, sizeof(out), true);
}

Test(announce, a_command_that_cannot_run_is_127_and_never_registered)
{
    cr_expect_eq(rdsrv_run("-announce tcp:port=9 -kind process -- /nonexistent/gdbserver :9"), 127,
                 "%s", out);
    cr_expect_str_eq(out, "rdsrv: cannot run /nonexistent/gdbserver: No such file or directory\n");
    cr_expect_eq(rdsrv_run("-announce tcp:port=9 -kind process -- /etc/passwd"), 127, "%s", out);
    cr_expect(strstr(out, "rdsrv: cannot run /etc/passwd: Permission denied"), "%s", out);
    wait_log("broker.log", "", 0, out, sizeof(out));
    cr_expect_null(strstr(out, "registered:"), "%s", out);
}

Test(announce, bad_usage)
{
    struct {
        const char *args, *msg;
    } cases[] = {
        {"-announce tcp:port=9 -kind process", "rdsrv: -announce needs the command to start "
                                               "after --"},
        {"-announce tcp:port=9 -kind process --", "rdsrv: -announce needs the command"},
        {"-announce tcp:port=9 -- sleep 1", "rdsrv: -announce needs -kind process, kd or debugger"},
        {"-announce tcp:port=9 -kind kernel -- sleep 1",
         "rdsrv: -kind \"kernel\" is not a kind: process (Remote Process Server), kd (Remote "
         "Kernel "
         "Debugger Server) or debugger (Debugger Server)"},
        {"-announce tcp:port=9,password=Secret12 -kind process -- sleep 1",
         "rdsrv: -announce tcp:port=9,password=*: rdsrv cannot check a password"},
        {"-announce tcp:port=9,clicon=box -kind process -- sleep 1", "clicon makes no sense here"},
        {"-announce tcp:port=9,Foreign -kind process -- sleep 1",
         "rdsrv: -announce tcp:port=9,Foreign: leave Foreign out: the string names where the "
         "command listens, and rdsrv lists every command it announces as Foreign"},
        {"-announce tcp:port=99999 -kind process -- sleep 1", "rdsrv: -announce tcp:port=99999: "},
        {"-announce tcp:port=9 -t tcp:port=9 -kind process -- sleep 1",
         "rdsrv: -announce lists a command that serves by itself: -t, -stub and -c do not go "
         "with it"},
        {"-t tcp:port=9 -kind process", "rdsrv: -kind goes with -announce"},
        {"-t tcp:port=9 -- sleep 1", "rdsrv: -- goes with -announce"},
        {"-announce", "rdsrv: -announce needs a value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_expect_eq(rdsrv_run(cases[i].args), 2, "%s: %s", cases[i].args, out);
        cr_expect(strstr(out, cases[i].msg), "%s: %s", cases[i].args, out);
        cr_expect_null(strstr(out, "Secret12"), "the password is shown: %s", out);
    }
    wait_log("broker.log", "", 0, out, sizeof(out));
    cr_expect_null(strstr(out, "registered:"), "%s", out);
}

Test(announce, help)
{
    cr_expect_eq(rdsrv_run("-?"), 0, "%s", out);
    cr_expect(strstr(out, "rdsrv -announce TRANSPORT -kind process|kd|debugger"), "%s", out);
}

/* ---- rdq -premote -forward ---- */

/* Starts rdq -premote `client` -forward `listen` [-timeout `timeout`] (log <name>.log) and
 * returns the port it prints in "rdq: forwarding ADDR:PORT to ..."; `addr` gets ADDR. */
static unsigned start_forward(const char *client, const char *listen, const char *timeout,
                              const char *name, pid_t *pid, char *addr, size_t alen)
{
    const char *argv[] = {"rdq", "-premote", client, "-forward", listen, "-timeout", timeout, NULL};
    if (!timeout)
        argv[5] = NULL;
    char log[64], buf[4096], a[80] = "";
    snprintf(log, sizeof(log), "%s.log", name);
    *pid = spawn(argv, name);
    cr_assert(wait_log(log, "rdq: forwarding ", 5000, buf, sizeof(buf)), "%s", buf);
    unsigned port = 0;
    const char *line = strstr(buf, "rdq: forwarding ");
    cr_assert(sscanf(line, "rdq: forwarding %79s to ", a) == 1, "%s", buf);
    char *colon = strrchr(a, ':');
    cr_assert(colon && sscanf(colon + 1, "%u", &port) == 1 && port > 0, "%s", buf);
    *colon = '\0';
    if (addr)
        snprintf(addr, alen, "%s", a);
    return port;
}

/* An ssl process server with a password (the default stub) and its client string. */
static void ssl_server(char *client, size_t len, const char *password)
{
    cr_assert(tc_make(), "the test certificates could not be made");
    unsigned p = test_free_ports(1);
    char t[128];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u,password=Secret12", p);
    const char *argv[] = {"rdsrv", "-t", t, NULL};
    spawn(argv, "srv");
    cr_assert(wait_log("srv.log", "0: rdq -premote", 5000, out, sizeof(out)), "%s", out);
    snprintf(client, len, "ssl:proto=tls1,certuser=%s,server=127.0.0.1,port=%u,password=%s",
             tc_srv_thumb, p, password);
}

/* gdb with a plain target extended-remote localhost:PORT; `hold` keeps it stopped in reached
 * for that many seconds. */
static const char *gdb_cmd(unsigned port, int hold, char *buf, size_t len)
{
    const char *target = getenv("RDQ_TARGET");
    cr_assert_not_null(target);
    snprintf(buf, len,
             "timeout 60 gdb -batch -nx -ex 'set confirm off' -ex 'set auto-connect-native off' "
             "-ex 'target extended-remote localhost:%u' -ex 'set remote exec-file %s' "
             "-ex 'file %s' -ex 'break reached' -ex 'run' -ex 'shell sleep %d' "
             "-ex 'print answer' -ex 'continue'",
             port, target, target, hold);
    return buf;
}

static void expect_debugged(const char *gdb_out)
{
    cr_expect(strstr(gdb_out, "from remote target..."), "not a remote session: %s", gdb_out);
    cr_expect(strstr(gdb_out, "Breakpoint 1, reached ()"), "no stop in reached: %s", gdb_out);
    cr_expect(strstr(gdb_out, "$1 = 42"), "answer is not 42: %s", gdb_out);
    cr_expect(strstr(gdb_out, "exited normally]"), "no normal exit: %s", gdb_out);
}

Test(announce, forward_lets_plain_gdb_debug_through_ssl_and_a_password)
{
    char client[256], cmd[2048], log[8192], addr[80];
    pid_t fwd;
    ssl_server(client, sizeof(client), "Secret12");
    unsigned port = start_forward(client, "0", NULL, "fwd", &fwd, addr, sizeof(addr));
    cr_expect_str_eq(addr, "127.0.0.1");
    cr_expect_eq(test_run(gdb_cmd(port, 0, cmd, sizeof(cmd)), out, sizeof(out), true), 0, "%s",
                 out);
    expect_debugged(out);
    /* gdb cannot speak TLS nor prove a password: rdq did, and the server saw its client */
    cr_expect(
        wait_log("srv.log", "rdsrv: client 1 from 127.0.0.1: stub pid", 2000, log, sizeof(log)),
        "%s", log);
    cr_expect(wait_log("fwd.log", "ended", 5000, log, sizeof(log)), "%s", log);
    cr_expect(strstr(log, "rdq: forward: connection 1 from 127.0.0.1:"), "%s", log);
    cr_expect(strstr(log, ": through to the server\n"), "%s", log);
    cr_expect(strstr(log, " to ssl:Proto=tls1,"), "%s", log);
    cr_expect_null(strstr(log, "Secret12"), "the password is shown: %s", log);
    kill(fwd, SIGTERM);
    cr_expect_eq(wait_exit(fwd, 5000), 0, "rdq did not end with SIGTERM");
    tc_remove();
}

Test(announce, forward_serves_two_connections_at_once)
{
    char client[256], cmd[4200], a[2048], b[2048], log[8192];
    pid_t fwd;
    ssl_server(client, sizeof(client), "Secret12");
    unsigned port = start_forward(client, "0", NULL, "fwd", &fwd, NULL, 0);
    /* both stay stopped in reached for 2 s: their sessions overlap */
    snprintf(cmd, sizeof(cmd), "%s > %s/a.out 2>&1 & %s > %s/b.out 2>&1; wait",
             gdb_cmd(port, 2, a, sizeof(a)), br.dir, gdb_cmd(port, 2, b, sizeof(b)), br.dir);
    test_run(cmd, out, sizeof(out), true);
    cr_expect(wait_log("a.out", "exited normally]", 0, out, sizeof(out)), "%s", out);
    expect_debugged(out);
    cr_expect(wait_log("b.out", "exited normally]", 0, out, sizeof(out)), "%s", out);
    expect_debugged(out);
    cr_expect(wait_log("fwd.log", "connection 2", 5000, log, sizeof(log)), "%s", log);
    const char *first_end = strstr(log, " ended\n");
    const char *through = strstr(log, ": through to the server\n");
    const char *second = through ? strstr(through + 1, ": through to the server\n") : NULL;
    cr_expect(second && (!first_end || second < first_end),
              "the second connection waited for the first: %s", log);
    cr_expect(wait_log("srv.log", "rdsrv: client 2 from 127.0.0.1", 2000, log, sizeof(log)), "%s",
              log);
    tc_remove();
}

Test(announce, forward_closes_a_connection_whose_dial_fails_and_goes_on)
{
    char client[256], cmd[2048], log[8192];
    pid_t fwd;
    ssl_server(client, sizeof(client), "wrong1");
    unsigned port = start_forward(client, "0", NULL, "fwd", &fwd, NULL, 0);
    for (int i = 1; i <= 2; i++) {
        snprintf(cmd, sizeof(cmd),
                 "timeout 20 gdb -batch -nx -ex 'set auto-connect-native off' "
                 "-ex 'target extended-remote localhost:%u' -ex 'info target'",
                 port);
        test_run(cmd, out, sizeof(out), true);
        cr_expect_null(strstr(out, "Remote serial target"), "gdb got through: %s", out);
        char want[96];
        snprintf(want, sizeof(want), "rdq: forward: connection %d from 127.0.0.1:", i);
        cr_expect(wait_log("fwd.log", want, 5000, log, sizeof(log)), "%s", log);
    }
    cr_expect_eq(test_count(log, ": Error 0x80004005: access denied: wrong password; closed it\n"),
                 2, "%s", log);
    cr_expect_null(strstr(log, "wrong1"), "the password is shown: %s", log);
    cr_expect_eq(kill(fwd, 0), 0, "rdq stopped forwarding");
    cr_expect_eq(waitpid(fwd, NULL, WNOHANG), 0, "rdq stopped forwarding");
    tc_remove();
}

Test(announce, forward_listens_where_it_is_told)
{
    unsigned p = test_free_ports(1);
    char t[64], client[96], addr[80], cmd[256];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    spawn(argv, "cat");
    cr_assert(wait_log("cat.log", "0: rdq -premote", 5000, out, sizeof(out)), "%s", out);
    snprintf(client, sizeof(client), "tcp:server=127.0.0.1,port=%u", p);
    pid_t f6, f4;
    unsigned port6 = start_forward(client, "[::1]:0", NULL, "f6", &f6, addr, sizeof(addr));
    cr_expect_str_eq(addr, "[::1]");
    snprintf(cmd, sizeof(cmd), "echo hello | timeout 10 socat -t 5 - 'TCP6:[::1]:%u'", port6);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "hello\n");
    unsigned port4 = start_forward(client, "0.0.0.0:0", NULL, "f4", &f4, addr, sizeof(addr));
    cr_expect_str_eq(addr, "0.0.0.0");
    snprintf(cmd, sizeof(cmd), "echo again | timeout 10 socat -t 5 - TCP4:127.0.0.1:%u", port4);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "again\n");
}

/* A pipe server (cat, with a password) on this host, reached as a pipe of another host through
 * the broker's relay, the broker's port seen through a socat relay that holds each connection
 * while the file hold exists, until the file go does (at most 20 s): a slow way to the broker.
 * Each connection held adds a line to the file held. Returns the client string in `client`;
 * the port of the slow way in `slow` (the forward's RDQ_BROKER_PORT). */
static void slow_broker_way(char *client, size_t len, unsigned *slow)
{
    test_broker_stop(&br, SIGTERM);
    br.extra[0] = "-relay";
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
    const char *srv[] = {"rdsrv", "-t", "npipe:pipe=slowpipe,password=Pw12", "-stub", "cat", NULL};
    spawn(srv, "srv");
    cr_assert(wait_log("srv.log", "0: rdq -premote", 5000, out, sizeof(out)), "%s", out);
    char script[192], listen[96], relay[256];
    snprintf(script, sizeof(script), "%s/slow.sh", br.dir);
    FILE *f = fopen(script, "we");
    cr_assert_not_null(f);
    fprintf(f,
            "cd %s\n"
            "if [ -e hold ]; then\n"
            "  echo $$ >>held; n=0\n"
            "  while [ ! -e go ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n + 1)); done\n"
            "fi\n"
            "exec socat - TCP:127.0.0.2:%u\n",
            br.dir, br.port);
    fclose(f);
    *slow = test_free_ports(1);
    snprintf(listen, sizeof(listen), "TCP-LISTEN:%u,bind=127.0.0.2,reuseaddr,fork", *slow);
    snprintf(relay, sizeof(relay), "SYSTEM:sh %s", script);
    const char *argv[] = {"socat", listen, relay, NULL};
    spawn(argv, "socat");
    cr_assert(test_wait_listening(*slow, 2000), "socat does not listen");
    /* 127.0.0.2 is not "this host" to rdq: the pipe is reached through that address's broker */
    snprintf(client, len, "npipe:server=127.0.0.2,pipe=slowpipe,password=Pw12");
}

/* Starts a forward to `client` whose broker is reached on port `slow`. */
static unsigned start_slow_forward(const char *client, unsigned slow, pid_t *pid)
{
    char port[16];
    snprintf(port, sizeof(port), "%u", slow);
    setenv("RDQ_BROKER_PORT", port, 1);
    unsigned p = start_forward(client, "0", "30000", "fwd", pid, NULL, 0);
    snprintf(port, sizeof(port), "%u", br.port);
    setenv("RDQ_BROKER_PORT", port, 1);
    return p;
}

/* Waits (up to 10 s) until the slow way holds `n` connections. */
static void wait_held(int n)
{
    char path[192], buf[256];
    snprintf(path, sizeof(path), "%s/held", br.dir);
    int held = 0;
    for (int i = 0; i < 500 && held < n; i++) {
        test_wait_file(path, "", 0, buf, sizeof(buf));
        held = test_count(buf, "\n");
        if (held < n)
            usleep(20000);
    }
    cr_assert_eq(held, n, "the slow way holds %d connections, not %d", held, n);
}

static void touch(const char *name)
{
    char path[192];
    snprintf(path, sizeof(path), "%s/%s", br.dir, name);
    FILE *f = fopen(path, "we");
    cr_assert_not_null(f, "%s", path);
    fclose(f);
}

static void forget_file(const char *name)
{
    char path[192];
    snprintf(path, sizeof(path), "%s/%s", br.dir, name);
    cr_assert_eq(unlink(path), 0, "%s", path);
}

/* Connects to 127.0.0.1:port from `from` (NULL: the system's choice), or fails the test. */
static int connect_from(unsigned port, const char *from)
{
    int fd = test_connect_port_from(port, from);
    cr_assert_geq(fd, 0, "port %u from %s: %s", port, from ? from : "anywhere", strerror(-fd));
    return fd;
}

static int connect_port(unsigned port)
{
    return connect_from(port, NULL);
}

/* Passes a line through the forward on a connection of its own. */
static void expect_echoed(unsigned port, const char *line)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "echo %s | timeout 10 socat -t 5 - TCP:127.0.0.1:%u", line, port);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    snprintf(cmd, sizeof(cmd), "%s\n", line);
    cr_expect_str_eq(out, cmd, "a connection was not served while another dialed");
}

/* On a network address, a forward caps each peer: one host (127.0.0.2) gets its 16, its 17th is
 * closed with why in the log, and another host is served. */
Test(announce, forward_on_a_network_address_caps_each_peer)
{
    const char *argv[] = {"rdsrv", "-t", "npipe:pipe=fwdcap", "-stub", "cat", NULL};
    spawn(argv, "cat");
    cr_assert(wait_log("cat.log", "0: rdq -premote", 5000, out, sizeof(out)), "%s", out);
    pid_t fwd;
    unsigned port = start_forward("npipe:server=localhost,pipe=fwdcap", "0.0.0.0:0", NULL, "fwd",
                                  &fwd, NULL, 0);
    int held[16];
    char log[16384], buf[256];
    for (int i = 0; i < 16; i++)
        held[i] = connect_from(port, "127.0.0.2");
    cr_assert(wait_log("fwd.log", "connection 16 from 127.0.0.2:", 5000, log, sizeof(log)), "%s",
              log);
    int more = connect_from(port, "127.0.0.2");
    cr_expect(test_fd_read_until(more, NULL, 5000, buf, sizeof(buf)), "the 17th is not closed: %s",
              buf);
    cr_expect(wait_log("fwd.log",
                       "refused: busy: 16 clients from your address 127.0.0.2, the most one host "
                       "may have",
                       5000, log, sizeof(log)),
              "%s", log);
    close(more);
    expect_echoed(port, "another-host");
    for (int i = 0; i < 16; i++)
        close(held[i]);
}

/* A forward through the slow way, its first connection `a` held there (and hold still there). */
static unsigned forward_with_a_held_dial(pid_t *fwd, int *a)
{
    char client[128];
    unsigned slow;
    slow_broker_way(client, sizeof(client), &slow);
    unsigned port = start_slow_forward(client, slow, fwd);
    touch("hold");
    *a = connect_port(port);
    wait_held(1);
    return port;
}

Test(announce, forward_serves_other_connections_while_one_dial_through_a_broker_waits)
{
    char buf[256], log[8192];
    pid_t fwd;
    int a;
    unsigned port = forward_with_a_held_dial(&fwd, &a);
    cr_assert_eq(send(a, "first\n", 6, MSG_NOSIGNAL), 6);
    forget_file("hold");
    /* the first connection's dial waits for its broker: a second one gets through meanwhile */
    expect_echoed(port, "second");
    cr_expect(wait_log("fwd.log", "connection 2 from", 0, log, sizeof(log)), "%s", log);
    /* (a connection's first line says it got through, or why it did not) */
    cr_expect_null(strstr(log, "connection 1 from"), "the first dial was not held: %s", log);
    /* and the first one is served when its broker answers */
    touch("go");
    cr_expect(test_fd_read_until(a, "first\n", 10000, buf, sizeof(buf)), "got \"%s\"", buf);
    close(a);
    cr_expect(wait_log("fwd.log", "connection 1 from 127.0.0.1:", 0, log, sizeof(log)), "%s", log);
    kill(fwd, SIGTERM);
    cr_expect_eq(wait_exit(fwd, 5000), 0, "rdq did not end with SIGTERM");
}

Test(announce, forward_drops_a_peer_gone_while_dialing_and_ends_with_dials_pending)
{
    char buf[256], log[8192];
    pid_t fwd;
    int a;
    unsigned port = forward_with_a_held_dial(&fwd, &a);
    close(a); /* gone while its dial waits */
    cr_expect(wait_log("fwd.log", "connection 1 from 127.0.0.1:", 5000, log, sizeof(log)), "%s",
              log);
    cr_expect(wait_log("fwd.log", ": gone before the server answered\n", 5000, log, sizeof(log)),
              "%s", log);
    int c = connect_port(port);
    wait_held(2);
    forget_file("hold");
    expect_echoed(port, "third");
    /* a dial still waits for its broker: SIGTERM stops it, and its connection is closed, at
     * once (the broker's way is still held) */
    kill(fwd, SIGTERM);
    cr_expect_eq(wait_exit(fwd, 15000), 0, "rdq did not end with SIGTERM");
    cr_expect(test_fd_read_until(c, NULL, 5000, buf, sizeof(buf)), "connection 2 was not closed");
    cr_expect(wait_log("fwd.log", "connection 3 from 127.0.0.1:", 0, log, sizeof(log)), "%s", log);
    cr_expect_null(strstr(log, "connection 2 from"), "the second dial was not held: %s", log);
    touch("go");
    close(c);
}

/* With clicon, each connection listens for the server's host: while one waits for the server
 * to connect, the next is answered at once (the port the server dials is taken), and the one
 * that waited is served once the server comes. */
Test(announce, forward_answers_other_connections_while_a_clicon_dial_waits)
{
    unsigned p = test_free_ports(1);
    char client[96], t[96], log[8192];
    snprintf(client, sizeof(client), "tcp:clicon=127.0.0.1,port=%u", p);
    pid_t fwd;
    unsigned port = start_forward(client, "0", "60000", "fwd", &fwd, NULL, 0);
    int fd[2] = {connect_port(port), connect_port(port)};
    cr_expect(wait_log("fwd.log", "is in use: choose another port", 20000, log, sizeof(log)),
              "no connection was answered while a dial waited: %s", log);
    snprintf(t, sizeof(t), "tcp:port=%u,clicon=127.0.0.1", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    spawn(argv, "cat");
    cr_expect_eq(test_fds_echoed(fd, 2, "first\n", 20000), 1,
                 "the waiting dial was not served once the server came");
    kill(fwd, SIGTERM);
    cr_expect_eq(wait_exit(fwd, 5000), 0, "rdq did not end with SIGTERM");
}

/* Runs rdq with `args` (bounded, without a terminal) into out. */
static int rdq_run(const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "timeout 10 setsid -w rdq %s </dev/null", args);
    return test_run(cmd, out, sizeof(out), true);
}

Test(announce, foreign_strings_are_refused_where_an_rdq_server_is_needed)
{
    cr_expect_eq(rdq_run("-remote tcp:port=9,server=localhost,Foreign"), 2, "%s", out);
    cr_expect_str_eq(out, "rdq: tcp:port=9,server=localhost,Foreign: Foreign: -remote joins rdq's "
                          "shared debugging sessions (rddbg); a foreign server is reached with "
                          "its own client, e.g. gdb -ex 'target remote | rdq -premote T'\n");
    cr_expect_eq(rdq_run("-premote tcp:port=9,server=localhost,Foreign -k "
                         "tcp:server=localhost,port=9"),
                 2, "%s", out);
    cr_expect(strstr(out, "Foreign: -k names a link to rdq's KD connection server (rdkdsrv)"), "%s",
              out);
    cr_expect_eq(rdq_run("-premote tcp:port=9,server=localhost,Foreign,password=Secret12"), 2, "%s",
                 out);
    cr_expect(strstr(out, "Foreign cannot be used with password"), "%s", out);
    cr_expect_null(strstr(out, "Secret12"), "the password is shown: %s", out);
    cr_expect_eq(rdq_run("-QR localhost -via tcp:port=9,server=localhost,Foreign"), 2, "%s", out);
    cr_expect(strstr(out, "rdq: -via: a broker's query endpoint is tcp, ssl, npipe or spipe, "
                          "never clicon, hidden or Foreign"),
              "%s", out);
    /* rdq's servers speak rdq's session layer: their strings never say Foreign */
    const char *servers[] = {"rdsrv -t tcp:port=9,Foreign",
                             "rddbg -server tcp:port=9,Foreign -- true",
                             "rdkdsrv -t tcp:port=9,Foreign -link tcp:server=localhost,port=9"};
    for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "timeout 10 %s </dev/null", servers[i]);
        cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s: %s", servers[i], out);
        cr_expect(strstr(out, "Foreign is for clients"), "%s: %s", servers[i], out);
    }
    wait_log("broker.log", "", 0, out, sizeof(out));
    cr_expect_null(strstr(out, "registered:"), "%s", out);
}

Test(announce, forward_bad_usage)
{
    unsigned p = test_free_ports(1);
    int taken = test_take_port(p);
    cr_assert_geq(taken, 0);
    char args[160], want[160];
    cr_expect_eq(rdq_run("-premote tcp:server=localhost,port=9 -forward"), 2, "%s", out);
    cr_expect(strstr(out, "rdq: -forward needs [ADDR:]PORT"), "%s", out);
    const char *bad[] = {"abc", "70000", "::1:80", "[::1]", ":80", "1.2.3.4:"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(args, sizeof(args), "-premote tcp:server=localhost,port=9 -forward '%s'", bad[i]);
        cr_expect_eq(rdq_run(args), 2, "%s: %s", bad[i], out);
        snprintf(want, sizeof(want), "rdq: -forward wants [ADDR:]PORT (");
        cr_expect(strstr(out, want), "%s: %s", bad[i], out);
    }
    snprintf(args, sizeof(args), "-premote tcp:server=localhost,port=9 -forward %u", p);
    cr_expect_eq(rdq_run(args), 1, "%s", out);
    snprintf(want, sizeof(want), "rdq: -forward %u: cannot listen: Address already in use", p);
    cr_expect(strstr(out, want), "%s", out);
    cr_expect_eq(rdq_run("-premote tcp:port=9 -forward 0"), 2, "%s", out);
    cr_expect_eq(rdq_run("-premote tcp:server=localhost,port=9,password=* -forward 0"), 2, "%s",
                 out);
    cr_expect(strstr(out, "Password=*: no terminal to ask the password on"), "%s", out);
    close(taken);
}
