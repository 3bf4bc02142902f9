/* rdsrv, the process server, end to end through the real programs: gdb through rdq -premote,
 * passwords, npipe servers, -c/-cs, the option rules, and what is never listed. */
#include "helpers.h"
#include "ptyline.h"
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SPAWNED 8
#define MAX_KIDS 64

static struct test_broker br;
static char out[65536];
static pid_t spawned[MAX_SPAWNED]; /* stopped, with all they started, by teardown */

static void stop_tree(pid_t pid, bool ours);

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    memset(spawned, 0, sizeof(spawned));
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
}

static void teardown(void)
{
    for (int i = 0; i < MAX_SPAWNED; i++)
        stop_tree(spawned[i], true);
    test_broker_stop(&br, SIGTERM);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br);
}

TestSuite(rdsrv, .init = setup, .fini = teardown, .timeout = 150);

/* ---- Processes ---- */

/* Reads /proc/pid/stat: the state letter and the parent; 0 when the process is gone. */
static char proc_stat(pid_t pid, pid_t *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'), state = 0;
    int parent = 0;
    if (!p || sscanf(p + 1, " %c %d", &state, &parent) != 2)
        return 0;
    if (ppid)
        *ppid = parent;
    return state;
}

/* The children of `parent` (zombies too when `zombies`). */
static int children(pid_t parent, pid_t *kids, int max, bool zombies)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(e->d_name), pp = 0;
        char st = proc_stat(pid, &pp);
        if (st && pp == parent && (zombies || st != 'Z'))
            kids[n++] = pid;
    }
    if (d)
        closedir(d);
    return n;
}

/* Kills `pid`'s descendants, deepest first, then `pid` itself (SIGTERM and reaped when it is
 * our child; otherwise SIGKILL, and its parent, still alive, reaps it). */
static void stop_tree(pid_t pid, bool ours)
{
    if (pid <= 0)
        return;
    pid_t kids[MAX_KIDS];
    int n = children(pid, kids, MAX_KIDS, true);
    for (int i = 0; i < n; i++)
        stop_tree(kids[i], false);
    if (ours) {
        test_stop(pid, SIGTERM);
        return;
    }
    kill(pid, SIGKILL);
    for (int i = 0; i < 100 && proc_stat(pid, NULL); i++)
        usleep(10000);
}

/* Spawns rdsrv with argv, output to <broker dir>/<name>.log (or nowhere without a name). */
static pid_t spawn(const char *const argv[], const char *name)
{
    char log[192];
    snprintf(log, sizeof(log), "%s/%s.log", br.dir, name ? name : "");
    pid_t pid = test_spawn(argv, name ? log : NULL, 0);
    cr_assert_gt(pid, 0);
    for (int i = 0; i < MAX_SPAWNED; i++)
        if (!spawned[i]) {
            spawned[i] = pid;
            return pid;
        }
    cr_assert_fail("too many servers in one test");
    return -1;
}

static void stop(pid_t pid)
{
    for (int i = 0; i < MAX_SPAWNED; i++)
        if (spawned[i] == pid)
            spawned[i] = 0;
    stop_tree(pid, true);
}

/* Polls <broker dir>/<name> (up to `ms`) until it contains `needle`; the text is in buf. */
static bool wait_log(const char *name, const char *needle, int ms, char *buf, size_t len)
{
    char path[192];
    snprintf(path, sizeof(path), "%s/%s", br.dir, name);
    return test_wait_file(path, needle, ms, buf, len);
}

/* Waits (up to `ms`) until `pid` has no live child. */
static bool no_children(pid_t pid, int ms)
{
    pid_t kids[MAX_KIDS];
    for (int waited = 0;; waited += 50) {
        if (children(pid, kids, MAX_KIDS, false) == 0)
            return true;
        if (waited >= ms)
            return false;
        usleep(50000);
    }
}

/* ---- gdb ---- */

/* gdb -batch goes on after a failed `target`: without auto-connect-native off, `run` would then
 * start the program natively and print the same stops and values. */
static int run_gdb(const char *client, char *buf, size_t len)
{
    const char *target = getenv("RDQ_TARGET");
    cr_assert_not_null(target, "RDQ_TARGET names the debug target");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "timeout 60 gdb -batch -nx -ex 'set confirm off' -ex 'set auto-connect-native off' "
             "-ex 'target extended-remote | rdq -premote %s' -ex 'set remote exec-file %s' "
             "-ex 'file %s' -ex 'break reached' -ex 'run' -ex 'print answer' -ex 'continue'",
             client, target, target);
    return test_run(cmd, buf, len, true);
}

static void expect_debugged(int rc, const char *gdb_out)
{
    cr_expect_eq(rc, 0, "gdb: %s", gdb_out);
    /* only a remote session reads the program's libraries through the stub */
    cr_expect(strstr(gdb_out, "from remote target..."), "not a remote session: %s", gdb_out);
    cr_expect(strstr(gdb_out, "Breakpoint 1, reached ()"), "no stop in reached: %s", gdb_out);
    cr_expect(strstr(gdb_out, "$1 = 42"), "answer is not 42: %s", gdb_out);
    cr_expect(strstr(gdb_out, "exited normally]"), "no normal exit: %s", gdb_out);
}

Test(rdsrv, gdb_debugs_a_program_through_premote)
{
    unsigned p = test_free_ports(1);
    char t[64], client[128];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    /* the default stub; no log, as a stub that never ends writes without end */
    const char *argv[] = {"rdsrv", "-t", t, NULL};
    pid_t s = spawn(argv, NULL);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    snprintf(client, sizeof(client), "tcp:server=127.0.0.1,port=%u", p);
    expect_debugged(run_gdb(client, out, sizeof(out)), out);
    /* the client has gone: its stub must end too, not linger (or spin) on a closed stdin */
    cr_expect(no_children(s, 5000),
              "the default stub (gdbserver --multi -) still runs 5 s after gdb left");
    stop(s);
}

Test(rdsrv, gdb_through_a_password_and_a_wrong_one_refused)
{
    unsigned p = test_free_ports(1);
    char t[64], client[128], cmd[256];
    snprintf(t, sizeof(t), "tcp:port=%u,password=Secret12", p);
    const char *argv[] = {"rdsrv", "-t", t, NULL};
    spawn(argv, NULL);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    cr_expect(strstr(out, "Password=*"), "%s", out);
    snprintf(client, sizeof(client), "tcp:server=127.0.0.1,port=%u,password=Secret12", p);
    expect_debugged(run_gdb(client, out, sizeof(out)), out);
    snprintf(cmd, sizeof(cmd),
             "timeout 20 rdq -premote tcp:server=127.0.0.1,port=%u,password=wrong1", p);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, "Error 0x80004005"), "%s", out);
    cr_expect_null(strstr(out, "wrong1"), "the password is printed: %s", out);
}

Test(rdsrv, gdb_through_ssl_with_and_without_a_password)
{
    cr_assert(tc_make(), "the test certificates could not be made");
    unsigned p = test_free_ports(2);
    char t[128], client[256];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u", p);
    const char *plain[] = {"rdsrv", "-t", t, NULL};
    spawn(plain, NULL);
    snprintf(client, sizeof(client), "ssl:proto=tls1,certuser=%s,server=127.0.0.1,port=%u",
             tc_srv_thumb, p);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    expect_debugged(run_gdb(client, out, sizeof(out)), out);
    char t2[128];
    snprintf(t2, sizeof(t2), "ssl:proto=tls1,certuser=rdq-srv,port=%u,password=Secret12", p + 1);
    const char *pw[] = {"rdsrv", "-t", t2, NULL};
    spawn(pw, NULL);
    cr_assert(test_wait_rows("localhost", 2, 5000, out, sizeof(out)), "%s", out);
    snprintf(client, sizeof(client),
             "ssl:proto=tls1,certuser=rdq-srv,server=127.0.0.1,port=%u,password=Secret12", p + 1);
    expect_debugged(run_gdb(client, out, sizeof(out)), out);
    tc_remove();
}

Test(rdsrv, gdb_through_com_on_a_pseudo_terminal_cable)
{
    struct ptyline line = {0};
    cr_assert_eq(ptyline_start(&line), 0, "no pseudo-terminals");
    char t[128], client[128];
    snprintf(t, sizeof(t), "com:port=%s,baud=115200,channel=3", line.a);
    const char *argv[] = {"rdsrv", "-t", t, NULL};
    pid_t s = spawn(argv, NULL);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    snprintf(client, sizeof(client), "com:port=%s,baud=115200,channel=3", line.b);
    expect_debugged(run_gdb(client, out, sizeof(out)), out);
    stop(s);            /* before the cable goes: a server left would look for its line again */
    usleep(400 * 1000); /* the line owners end with their last user */
    ptyline_stop(&line);
}

/* ---- Clients with a cat stub ---- */

/* Sends "hello" through rdq -premote to a cat stub: it comes back, and rdq ends with the stub. */
static void expect_echo(const char *client)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "timeout 20 sh -c 'echo hello | rdq -premote %s'", client);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "hello\n");
}

Test(rdsrv, premote_reaches_an_npipe_server)
{
    const char *argv[] = {"rdsrv", "-t", "npipe:pipe=stub%d", "-stub", "cat", NULL};
    pid_t s = spawn(argv, "npipe");
    char log[4096], pipe_name[64] = "", host[256] = "", me[256] = "", want[64], client[256];
    cr_assert(wait_log("npipe.log", "0: rdq -premote ", 5000, log, sizeof(log)), "%s", log);
    const char *line = strstr(log, "0: rdq -premote npipe:Pipe=");
    cr_assert_not_null(line, "%s", log);
    cr_assert_eq(
        sscanf(line, "0: rdq -premote npipe:Pipe=%63[^,\n],Server=%255[^\n]", pipe_name, host), 2,
        "%s", log);
    snprintf(want, sizeof(want), "stub%d", (int)s);
    cr_expect_str_eq(pipe_name, want, "%%d is the server's process id");
    gethostname(me, sizeof(me));
    cr_expect_str_eq(host, me);
    snprintf(client, sizeof(client), "npipe:server=localhost,pipe=%s", pipe_name);
    expect_echo(client);
    stop(s);
}

/* One host (127.0.0.2, through a relay) takes every place it may: its next client gets why as
 * gdb shows it, while another host is served. */
Test(rdsrv, one_host_cannot_take_every_place)
{
    unsigned p = test_free_ports(2), relay = p + 1;
    char t[64], listen[96], to[96], cs[64], err[RDT_ERR_MAX], buf[512], log[4096];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    pid_t s = spawn(argv, "srv");
    cr_assert(wait_log("srv.log", "0: rdq", 5000, log, sizeof(log)), "%s", log);
    snprintf(listen, sizeof(listen), "TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr,fork", relay);
    snprintf(to, sizeof(to), "TCP:127.0.0.1:%u,bind=127.0.0.2", p);
    const char *socat[] = {"socat", listen, to, NULL};
    pid_t relay_pid = spawn(socat, "socat");
    cr_assert(test_wait_listening(relay, 5000), "socat does not listen");
    snprintf(cs, sizeof(cs), "tcp:server=127.0.0.1,port=%u", relay);
    struct rdt_conn *held[16], *more;
    for (int i = 0; i < 16; i++)
        cr_assert_eq(test_connect(&held[i], cs, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert(wait_log("srv.log", "client 16 from 127.0.0.2: stub pid", 5000, log, sizeof(log)),
              "%s", log);
    cr_assert_eq(test_connect(&more, cs, NULL, err, sizeof(err)), 0, "%s", err);
    test_read_until(more, NULL, buf, sizeof(buf), 5000);
    cr_expect(strstr(buf, "+$E.busy: 16 clients from your address 127.0.0.2, the most one host "
                          "may have#"),
              "the 17th client of one host: \"%s\"", buf);
    rdt_conn_free(more);
    snprintf(cs, sizeof(cs), "tcp:server=127.0.0.1,port=%u", p); /* from 127.0.0.1 */
    expect_echo(cs);
    for (int i = 0; i < 16; i++)
        rdt_conn_free(held[i]);
    stop(relay_pid);
    stop(s);
}

/* One host that holds a whole IPv6 /64 takes, with an address for each 16 clients, half the
 * places and no more; a host of another network is served. */
Test(rdsrv, one_ipv6_network_cannot_take_every_place)
{
    if (!test_v6_net("2001:db8:7::/64", true) || !test_v6_net("2001:db8:8::/64", true))
        cr_skip_test("no IPv6 network of its own on lo (needs root)");
    unsigned p = test_free_ports(1);
    char t[80], err[RDT_ERR_MAX], buf[512], log[8192], from[64];
    snprintf(t, sizeof(t), "tcp:port=%u,ipversion=6", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    pid_t s = spawn(argv, "srv");
    cr_assert(wait_log("srv.log", "0: rdq", 5000, log, sizeof(log)), "%s", log);
    struct rdt_conn *held[32], *more = NULL, *other = NULL;
    for (int i = 0; i < 32; i++) {
        snprintf(from, sizeof(from), "2001:db8:7::%x", 0x10 + i / 16);
        cr_assert_eq(test_session_from(&held[i], from, "2001:db8:7::1", p, NULL, err, sizeof(err)),
                     0, "%s", err);
    }
    cr_assert(
        wait_log("srv.log", "client 32 from 2001:db8:7::11: stub pid", 5000, log, sizeof(log)),
        "%s", log);
    cr_assert_eq(
        test_session_from(&more, "2001:db8:7::12", "2001:db8:7::1", p, NULL, err, sizeof(err)), 0,
        "%s", err);
    test_read_until(more, NULL, buf, sizeof(buf), 5000);
    cr_expect(strstr(buf, "+$E.busy: 32 clients from your network 2001:db8:7::/64, the most one "
                          "network may have#"),
              "the 33rd client of one /64: \"%s\"", buf);
    rdt_conn_free(more);
    cr_assert_eq(
        test_session_from(&other, "2001:db8:8::1", "2001:db8:7::1", p, NULL, err, sizeof(err)), 0,
        "%s", err);
    cr_expect_eq(rdt_conn_write_all(other, "ping\n", 5, 5000), 0);
    cr_expect_gt(test_read_until(other, "ping\n", buf, sizeof(buf), 5000), 0);
    cr_expect_str_eq(buf, "ping\n", "another network's client is served");
    rdt_conn_free(other);
    for (int i = 0; i < 32; i++)
        rdt_conn_free(held[i]);
    stop(s);
    test_v6_net("2001:db8:7::/64", false);
    test_v6_net("2001:db8:8::/64", false);
}

/* Refused passwords hold back the next attempts of the whole /64, not of one address: a host
 * with a /64 of its own guesses no faster for its many addresses. */
Test(rdsrv, refused_passwords_hold_back_the_whole_ipv6_network)
{
    if (!test_v6_net("2001:db8:9::/64", true))
        cr_skip_test("no IPv6 network of its own on lo (needs root)");
    unsigned p = test_free_ports(1);
    char t[96], err[RDT_ERR_MAX], log[8192];
    snprintf(t, sizeof(t), "tcp:port=%u,ipversion=6,password=Right1", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    pid_t s = spawn(argv, "srv");
    cr_assert(wait_log("srv.log", "0: rdq", 5000, log, sizeof(log)), "%s", log);
    struct rdt_conn *c = NULL;
    for (int i = 0; i < 4; i++) /* each waits out the hold-back of the one before: 2 s by now */
        cr_assert_neq(
            test_session_from(&c, "2001:db8:9::21", "2001:db8:9::1", p, "Wrong1", err, sizeof(err)),
            0, "a wrong password was taken");
    /* two attempts of other addresses of that /64 at once: one waits, the other is turned away */
    int fd[2] = {test_connect_from6("2001:db8:9::22", "2001:db8:9::1", p, err, sizeof(err)),
                 test_connect_from6("2001:db8:9::23", "2001:db8:9::1", p, err, sizeof(err))};
    cr_assert(fd[0] >= 0 && fd[1] >= 0, "%s", err);
    cr_expect(wait_log("srv.log",
                       "2001:db8:9::23: turned away: its last password was refused and an attempt "
                       "of its waits out its hold-back",
                       5000, log, sizeof(log)),
              "%s", log);
    close(fd[0]);
    close(fd[1]);
    stop(s);
    test_v6_net("2001:db8:9::/64", false);
}

/* A client that never reads what its stub wrote does not keep its place for ever once the stub
 * has ended: it is let go, and said so. */
Test(rdsrv, a_client_that_never_reads_is_let_go_after_its_stub_ended)
{
    unsigned p = test_free_ports(1);
    char t[64], cs[64], err[RDT_ERR_MAX], log[4096];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "head -c 3000000 /dev/zero", NULL};
    pid_t s = spawn(argv, "srv");
    cr_assert(wait_log("srv.log", "0: rdq", 5000, log, sizeof(log)), "%s", log);
    snprintf(cs, sizeof(cs), "tcp:server=127.0.0.1,port=%u", p);
    struct rdt_conn *c;
    cr_assert_eq(test_connect(&c, cs, NULL, err, sizeof(err)), 0, "%s", err);
    int small = 4096; /* and it reads nothing: the stub's output waits in rdsrv */
    setsockopt(rdt_conn_fd(c), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    cr_expect(wait_log("srv.log",
                       "rdsrv: client 1 took nothing of its stub's output for 10 s; let go", 20000,
                       log, sizeof(log)),
              "%s", log);
    rdt_conn_free(c);
    stop(s);
}

Test(rdsrv, premote_carries_a_flood_both_ways_at_once)
{
    /* 64 MB through a stub that echoes it as it comes: all of it comes back while both
     * directions are busy at once */
    unsigned p = test_free_ports(1);
    char t[64], log[4096], cmd[256];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    pid_t s = spawn(argv, "flood");
    cr_assert(wait_log("flood.log", "0: rdq", 5000, log, sizeof(log)), "%s", log);
    snprintf(cmd, sizeof(cmd),
             "head -c 64000000 /dev/zero | timeout 60 rdq -premote tcp:server=127.0.0.1,port=%u | "
             "wc -c",
             p);
    cr_expect_eq(test_run(cmd, out, sizeof(out), false), 0, "%s", out);
    cr_expect_eq(strtol(out, NULL, 10), 64000000, "%s", out);
    stop(s);
}

Test(rdsrv, a_stub_that_ends_before_its_client_has_read_its_output_loses_none)
{
    /* the stub's process ends at once, and what it started writes 4 MB after it ends; the
     * client ends its input at once and reads nothing for 3 s, past the grace that the end of
     * a stub gives its client: rdsrv still passes on every byte the stub wrote, as long as the
     * client takes them */
    const char *argv[] = {"rdsrv", "-t", "npipe:pipe=late", "-stub", "head -c 4000000 /dev/zero &",
                          NULL};
    pid_t s = spawn(argv, "late");
    char log[4096];
    cr_assert(wait_log("late.log", "0: rdq", 5000, log, sizeof(log)), "%s", log);
    const char *cmd = "timeout 30 rdq -premote npipe:server=localhost,pipe=late </dev/null | "
                      "(sleep 3; wc -c)";
    cr_expect_eq(test_run(cmd, out, sizeof(out), false), 0, "%s", out);
    cr_expect_eq(strtol(out, NULL, 10), 4000000, "%s", out);
    stop(s);
}

Test(rdsrv, a_broker_that_does_not_answer_holds_nothing_up)
{
    /* a socket that takes connections and never answers: every registration attempt times
     * out, and meanwhile the server serves its clients as if nothing were wrong */
    char fake[160], t[64], log[4096], cmd[256];
    snprintf(fake, sizeof(fake), "%s/mute.sock", br.dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fake);
    int mute = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_eq(bind(mute, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(mute, 4096), 0);
    unsigned p = test_free_ports(1);
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", "-broker", fake, NULL};
    pid_t s = spawn(argv, "mute");
    cr_assert(wait_log("mute.log", "not discoverable", 5000, log, sizeof(log)), "%s", log);
    cr_expect(strstr(log, "the broker did not answer in time"), "%s", log);
    for (int i = 0; i < 8; i++) { /* over several of its retries */
        snprintf(cmd, sizeof(cmd),
                 "echo ping-%d | rdq -premote -timeout 500 tcp:server=127.0.0.1,port=%u", i, p);
        cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "attempt %d: %s", i, out);
        usleep(100 * 1000);
    }
    stop(s);
    close(mute);
}

Test(rdsrv, start_message_gives_the_client_string)
{
    unsigned p = test_free_ports(1);
    char t[64], log[4096], want[512], host[256] = "";
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    pid_t s = spawn(argv, "start");
    cr_assert(wait_log("start.log", "0: rdq", 5000, log, sizeof(log)), "%s", log);
    gethostname(host, sizeof(host));
    snprintf(want, sizeof(want),
             "Server started.  Client can connect with any of these command lines\n"
             "0: rdq -premote tcp:Port=%u,Server=%s\n",
             p, host);
    cr_expect(strstr(log, want), "want:\n%s\ngot:\n%s", want, log);
    stop(s);
}

/* ---- -c and -cs ---- */

/* Starts rdsrv -t ... -c[s] sleep 30 and returns the pid it prints. */
static pid_t start_sleep(const char *flag, const char *name, char *log, size_t len)
{
    unsigned p = test_free_ports(1);
    char t[64], logname[64];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    snprintf(logname, sizeof(logname), "%s.log", name);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", flag, "sleep", "30", NULL};
    spawn(argv, name);
    cr_assert(wait_log(logname, "Process started: pid ", 5000, log, len), "%s", log);
    int pid = 0;
    cr_assert_eq(sscanf(strstr(log, "Process started: pid "), "Process started: pid %d", &pid), 1);
    cr_assert_gt(pid, 0, "%s", log);
    return (pid_t)pid;
}

static bool is_sleep(pid_t pid)
{
    char path[64], exe[256];
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    return strcmp(exe, "/usr/bin/sleep") == 0 || strcmp(exe, "/bin/sleep") == 0;
}

/* The TracerPid line of /proc/pid/status. */
static int tracer(pid_t pid)
{
    char path[64], line[256];
    int t = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "TracerPid: %d", &t) == 1)
            break;
    if (f)
        fclose(f);
    return t;
}

Test(rdsrv, c_starts_a_running_process)
{
    char log[4096];
    pid_t app = start_sleep("-c", "c", log, sizeof(log));
    char st = proc_stat(app, NULL);
    cr_expect(st != 0, "process %d does not exist", (int)app);
    cr_expect(st != 'T' && st != 't', "-c started it stopped (state %c)", st);
    cr_expect(is_sleep(app), "process %d is not sleep", (int)app);
    cr_expect_null(strstr(log, "(stopped)"), "%s", log);
    kill(app, SIGKILL);
}

Test(rdsrv, cs_starts_a_process_stopped_after_exec)
{
    char log[4096];
    pid_t app = start_sleep("-cs", "cs", log, sizeof(log));
    cr_expect(strstr(log, "(stopped)"), "%s", log);
    char st = 0;
    for (int i = 0; i < 100 && (st = proc_stat(app, NULL)) != 'T'; i++)
        usleep(20000);
    cr_expect_eq(st, 'T', "-cs: process %d is in state %c, not stopped", (int)app, st);
    cr_expect(is_sleep(app), "process %d is not stopped after the exec of sleep", (int)app);
    cr_expect_eq(tracer(app), 0, "process %d is still traced: no smart client can attach",
                 (int)app);
    kill(app, SIGKILL);
}

/* ---- Option rules ---- */

/* Runs rdsrv with `args` (bounded, in case it wrongly starts serving) into out. */
static int rdsrv_run(const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "timeout 10 rdsrv %s", args);
    return test_run(cmd, out, sizeof(out), true);
}

Test(rdsrv, sifeo_is_refused)
{
    char args[128];
    snprintf(args, sizeof(args), "-t tcp:port=%u -sifeo", test_free_ports(1));
    cr_expect_eq(rdsrv_run(args), 2, "%s", out);
    cr_expect(strstr(out, "rdsrv: -sifeo has no meaning on Linux"), "%s", out);
}

Test(rdsrv, pc_as_the_last_item_is_an_error)
{
    char args[128];
    snprintf(args, sizeof(args), "-t tcp:port=%u -pc", test_free_ports(1));
    cr_expect_eq(rdsrv_run(args), 2, "%s", out);
    cr_expect(strstr(out, "rdsrv: -pc ignores the rest of the command line, and there is none"),
              "%s", out);
}

Test(rdsrv, pc_and_x_ignore_the_rest)
{
    unsigned p = test_free_ports(2);
    char t1[64], t2[64], want[256];
    snprintf(t1, sizeof(t1), "tcp:port=%u", p);
    snprintf(t2, sizeof(t2), "tcp:port=%u", p + 1);
    const char *pc[] = {"rdsrv", "-t", t1, "-stub", "cat", "-pc", "-frob", "anything", NULL};
    const char *x[] = {"rdsrv", "-t", t2, "-stub", "cat", "-x", "-sifeo", "-pc", NULL};
    pid_t a = spawn(pc, "pc");
    pid_t b = spawn(x, "x");
    cr_assert(test_wait_rows("localhost", 2, 5000, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want), "Remote Process Server - tcp:Port=%u\n", p);
    cr_expect(strstr(out, want), "%s", out);
    snprintf(want, sizeof(want), "Remote Process Server - tcp:Port=%u\n", p + 1);
    cr_expect(strstr(out, want), "%s", out);
    stop(a);
    stop(b);
    cr_expect(test_wait_rows("localhost", 0, 2000, out, sizeof(out)), "%s", out);
}

Test(rdsrv, transport_is_required)
{
    cr_expect_eq(rdsrv_run("-stub cat"), 2, "%s", out);
    cr_expect(strstr(out, "rdsrv: -t TRANSPORT is required"), "%s", out);
    cr_expect_eq(rdsrv_run("-t"), 2, "%s", out);
    cr_expect(strstr(out, "rdsrv: -t needs a value"), "%s", out);
}

Test(rdsrv, bad_transport_string_is_a_usage_error)
{
    cr_expect_eq(rdsrv_run("-t tcp:port=5005,clicon=box,hidden"), 2, "%s", out);
    cr_expect(strstr(out, "clicon servers cannot be hidden"), "%s", out);
}

Test(rdsrv, port_in_use_is_a_failure)
{
    unsigned p = test_free_ports(1);
    int fd = test_take_port(p);
    cr_assert_geq(fd, 0);
    char args[64], want[64];
    snprintf(args, sizeof(args), "-t tcp:port=%u", p);
    int rc = rdsrv_run(args);
    close(fd);
    cr_expect_eq(rc, 1, "%s", out);
    snprintf(want, sizeof(want), "port %u is in use", p);
    cr_expect(strstr(out, want), "%s", out);
}

Test(rdsrv, premote_names_a_connect_unanswered_and_a_server_gone_quiet)
{
    unsigned p = test_free_ports(2);
    int fill[2], quiet = test_take_port(p + 1), silent = test_unanswered_port(p, fill);
    cr_assert(quiet >= 0 && silent >= 0);
    char cmd[160], want[160];
    snprintf(cmd, sizeof(cmd), "rdq -premote tcp:server=127.0.0.1,port=%u -timeout 300 </dev/null",
             p);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    snprintf(want, sizeof(want), "rdq: tcp: no answer from 127.0.0.1:%u within 300 ms\n", p);
    cr_expect_str_eq(out, want);
    snprintf(cmd, sizeof(cmd), "rdq -premote tcp:server=127.0.0.1,port=%u -timeout 300 </dev/null",
             p + 1);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    snprintf(want, sizeof(want),
             "rdq: tcp: 127.0.0.1:%u accepted the connection but did not complete the handshake "
             "within 300 ms (an ssl or spipe server waits so for a TLS client)\n",
             p + 1);
    cr_expect_str_eq(out, want);
    close(fill[0]);
    close(fill[1]);
    close(silent);
    close(quiet);
}

Test(rdsrv, errors_never_show_the_password)
{
    unsigned p = test_free_ports(1);
    int fd = test_take_port(p);
    cr_assert_geq(fd, 0);
    char args[96];
    snprintf(args, sizeof(args), "-t tcp:port=%u,password=Gnu42secret", p);
    int rc = rdsrv_run(args);
    close(fd);
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "password=*"), "%s", out);
    cr_expect_null(strstr(out, "Gnu42"), "the password was shown: %s", out);
}

Test(rdsrv, programs_it_starts_take_sigpipe_as_usual)
{
    /* rdsrv ignores SIGPIPE for itself: a program it starts (with -c) or a stub must not inherit
     * that, or a writer to a closed pipe would go on forever */
    char log[4096];
    unsigned p = test_free_ports(1);
    char t[64];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    const char *argv[] = {"rdsrv", "-t",  t,
                          "-stub", "cat", "-c",
                          "sh",    "-c",  "grep SigIgn /proc/self/status; exec sleep 30",
                          NULL};
    spawn(argv, "sigpipe");
    cr_assert(wait_log("sigpipe.log", "SigIgn:", 5000, log, sizeof(log)), "%s", log);
    unsigned long long ign = ~0ULL;
    cr_assert_eq(sscanf(strstr(log, "SigIgn:"), "SigIgn: %llx", &ign), 1, "%s", log);
    cr_expect_eq(ign & (1ULL << (SIGPIPE - 1)), 0, "SIGPIPE is ignored in the program: %s", log);
    int pid = 0;
    const char *started = strstr(log, "Process started: pid ");
    if (started && sscanf(started, "Process started: pid %d", &pid) == 1 && pid > 0)
        kill(pid, SIGKILL);
}

Test(rdsrv, help)
{
    cr_expect_eq(rdsrv_run("-?"), 0, "%s", out);
    cr_expect(strstr(out, "Usage: rdsrv"), "%s", out);
    cr_expect_eq(rdsrv_run("--help"), 0, "%s", out);
    cr_expect(strstr(out, "Usage: rdsrv"), "%s", out);
    cr_expect(strstr(out, "as dbgsrv of Microsoft's Debugging Tools for Windows"), "%s", out);
}

/* ---- Never listed ---- */

Test(rdsrv, hidden_and_clicon_are_never_listed_yet_reachable)
{
    unsigned p = test_free_ports(3);
    char plain[64], hidden[64], clicon[64], log[8192], want[256], client[128];
    snprintf(plain, sizeof(plain), "tcp:port=%u", p);
    snprintf(hidden, sizeof(hidden), "tcp:port=%u,hidden", p + 1);
    snprintf(clicon, sizeof(clicon), "tcp:port=%u,clicon=127.0.0.1", p + 2);
    const char *a1[] = {"rdsrv", "-t", plain, "-stub", "cat", NULL};
    const char *a2[] = {"rdsrv", "-t", hidden, "-stub", "cat", NULL};
    const char *a3[] = {"rdsrv", "-t", clicon, "-stub", "cat", NULL};
    spawn(a1, "plain");
    spawn(a2, "hidden");
    spawn(a3, "clicon");
    /* all three have registered: the broker knows them, and lists one */
    for (int i = 0; i < 250; i++) {
        wait_log("broker.log", "registered:", 0, log, sizeof(log));
        if (test_count(log, "registered:") >= 3)
            break;
        usleep(20000);
    }
    cr_assert_eq(test_count(log, "registered:"), 3, "%s", log);
    snprintf(want, sizeof(want), "Servers on localhost:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_assert_eq(test_qr("localhost", out, sizeof(out)), 0, "%s", out);
    cr_expect_str_eq(out, want);
    snprintf(want, sizeof(want), "Servers on 127.0.0.1:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_assert_eq(test_qr("127.0.0.1", out, sizeof(out)), 0, "%s", out);
    cr_expect_str_eq(out, want);
    snprintf(client, sizeof(client), "tcp:server=127.0.0.1,port=%u", p + 1);
    expect_echo(client);
}
