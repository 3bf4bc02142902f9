/* rdq -remote against rddbg around real gdb: from pipes (two clients, one an observer), in a real
 * terminal (tmux: typing, Ctrl-C interrupting a running program, Ctrl-D leaving), and rdq -QR
 * listing debugging and process servers together. */
#include "helpers.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct test_broker br;
static unsigned port;
static pid_t dbg;
static char cs[128], sock[64], out[65536], screen[16384], cmd[4096], path[160];

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    cr_assert_eq(test_broker_start(&br), 0);
    snprintf(sock, sizeof(sock), "rdqremote-%d", (int)getpid());
}

static void teardown(void)
{
    snprintf(cmd, sizeof(cmd), "tmux -L %s kill-server 2>/dev/null", sock);
    test_run(cmd, out, sizeof(out), true);
    test_stop(dbg, SIGTERM);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br);
}

TestSuite(remote, .init = setup, .fini = teardown, .timeout = 60);

/* rddbg -noio around gdb debugging `prog`, on a free tcp port; `control`: with a control
 * password. */
static void rddbg(const char *prog, bool control)
{
    port = test_free_ports(1);
    char t[64], log[160];
    snprintf(t, sizeof(t), "tcp:port=%u", port);
    snprintf(log, sizeof(log), "%s/rddbg.log", br.dir);
    const char *argv[16] = {"rddbg", "-server", t, "-noio"};
    int n = 4;
    if (control) {
        argv[n++] = "-control-password";
        argv[n++] = "Ctl0pw";
    }
    const char *tail[] = {"--", "gdb", "-q", "-nx", prog, NULL};
    memcpy(argv + n, tail, sizeof(tail));
    dbg = test_spawn(argv, log, 0);
    snprintf(cs, sizeof(cs), "tcp:server=127.0.0.1,port=%u", port);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    cr_assert(strstr(out, "Debugger Server - tcp:Port="), "%s", out);
}

/* A client from a pipe: `script` as its input, output into a file of its own (returned). */
static const char *client(const char *name, const char *opts, const char *script)
{
    static char files[4][160];
    static int n;
    char *f = files[n++ % 4];
    snprintf(f, 160, "%s/%s.out", br.dir, name);
    snprintf(cmd, sizeof(cmd), "(%s) | rdq -remote %s %s -wait 1500 >%s 2>&1 &", script, cs, opts,
             f);
    test_run(cmd, out, sizeof(out), true);
    return f;
}

static bool file_has(const char *f, const char *needle, int ms)
{
    return test_wait_file(f, needle, ms, out, sizeof(out));
}

Test(remote, two_clients_from_pipes_one_watching)
{
    rddbg(getenv("RDQ_TARGET"), false);
    /* the observer joins first and stays until the end; the controller sets a breakpoint and
     * runs; the observer's typed continue is refused */
    const char *watch = client("watch", "-observe", "sleep 1; echo continue; sleep 4");
    cr_assert(file_has(watch, "joined as an observer", 3000), "%s", out);
    const char *ctl = client("ctl", "",
                             "echo 'break reached'; sleep 0.3; echo run; sleep 1; "
                             "echo 'print answer'; sleep 0.5");
    cr_expect(file_has(ctl, "Breakpoint 1, reached ()", 8000), "%s", out);
    cr_expect(file_has(ctl, "$1 = 42", 5000), "%s", out);
    cr_expect(file_has(watch, "Breakpoint 1, reached ()", 5000), "%s", out);
    cr_expect(file_has(watch, "$1 = 42", 5000), "%s", out);
    cr_expect(file_has(watch, "you joined as an observer: input is refused", 5000), "%s", out);
    /* and it never reached gdb: nobody saw it continue */
    cr_expect(file_has(watch, "@", 100) && !strstr(out, "Continuing."), "%s", out);
    cr_expect(file_has(ctl, "$1 = 42", 100) && !strstr(out, "Continuing."), "%s", out);
}

Test(remote, the_debugger_ending_ends_the_client_with_why)
{
    rddbg(getenv("RDQ_TARGET"), false);
    const char *c = client("quitter", "", "echo 'quit 3'; sleep 3");
    cr_expect(file_has(c, "rdq: the session ended: the debugger ended (exit status 3)", 5000), "%s",
              out);
}

Test(remote, without_the_control_password_one_watches)
{
    rddbg(getenv("RDQ_TARGET"), true);
    const char *no = client("nopw", "", "echo 'break main'; sleep 1");
    cr_expect(file_has(no, "control needs the session's control password", 5000), "%s", out);
    cr_expect(file_has(no, "input is refused", 5000), "%s", out);
    const char *yes = client("pw", "-control-password Ctl0pw", "echo 'print 6*7'; sleep 1");
    cr_expect(file_has(yes, "$1 = 42", 5000), "%s", out);
}

Test(remote, qr_lists_debugging_and_process_servers_with_their_types)
{
    rddbg(getenv("RDQ_TARGET"), false);
    unsigned p = test_free_ports(1);
    char t[64], log[160], want[256];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    snprintf(log, sizeof(log), "%s/rdsrv.log", br.dir);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    pid_t s = test_spawn(argv, log, 0);
    cr_assert(test_wait_rows("localhost", 2, 5000, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want), "Debugger Server - tcp:Port=%u\n", port);
    cr_expect(strstr(out, want), "%s", out);
    snprintf(want, sizeof(want), "Remote Process Server - tcp:Port=%u\n", p);
    cr_expect(strstr(out, want), "%s", out);
    cr_expect_eq(test_qr("localhost -kind debugger", out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "Servers on localhost:\nDebugger Server - tcp:Port=%u\n", port);
    cr_expect_str_eq(out, want);
    cr_expect_eq(test_qr("localhost -kind remote", out, sizeof(out)), 0);
    snprintf(want, sizeof(want), "Servers on localhost:\nRemote Process Server - tcp:Port=%u\n", p);
    cr_expect_str_eq(out, want);
    test_stop(s, SIGTERM);
}

/* ---- In a real terminal ---- */

static bool shows(const char *needle, int ms)
{
    return test_tmux_shows(sock, true, needle, ms, screen, sizeof(screen));
}

static void keys(const char *k)
{
    snprintf(cmd, sizeof(cmd), "tmux -L %s send-keys -t t %s", sock, k);
    test_run(cmd, out, sizeof(out), true);
}

Test(remote, in_a_terminal_typing_interrupting_and_leaving)
{
    rddbg(getenv("RDQ_SPIN"), false);
    snprintf(path, sizeof(path), "%s/exit", br.dir);
    snprintf(cmd, sizeof(cmd),
             "tmux -L %s new-session -d -s t -x 150 -y 40 \"rdq -remote %s; echo EXIT=\\$? >%s\"",
             sock, cs, path);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_assert(shows("joined (1 clients)", 15000), "%s", screen);
    keys("run Enter");
    cr_assert(shows("spinning", 15000), "%s", screen);
    usleep(100000);
    keys("C-c"); /* the terminal's interrupt goes to the debugger, not to rdq */
    cr_expect(shows("Program received signal SIGINT", 15000), "%s", screen);
    keys("'print spins > 0' Enter");
    cr_expect(shows("$1 = 1", 15000), "%s", screen);
    keys("C-d");
    cr_expect(test_wait_file(path, "EXIT=0", 5000, out, sizeof(out)), "%s", out);
    /* leaving ended nothing: the session goes on for the next client */
    const char *c = client("after", "", "echo 'print 1+1'; sleep 1");
    cr_expect(file_has(c, "= 2", 15000), "%s", out);
}

/* rddbg around gdb with its console in a terminal (tmux, 150 by 40), on a free port. */
static void console_in_tmux(void)
{
    port = test_free_ports(1);
    snprintf(cmd, sizeof(cmd),
             "tmux -L %s new-session -d -s t -x 150 -y 40 \"rddbg -server tcp:port=%u -- gdb -q "
             "-nx\"",
             sock, port);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_assert(shows("(gdb)", 15000), "%s", screen);
}

/* rddbg with its console in a terminal: the debugger's window follows the terminal's. */
Test(remote, the_debugger_follows_the_consoles_window)
{
    console_in_tmux();
    keys("'show width' Enter");
    cr_expect(shows("in a line is 150.", 15000), "%s", screen);
    snprintf(cmd, sizeof(cmd), "tmux -L %s resize-window -t t -x 120 -y 30", sock);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    usleep(500000); /* the terminal's SIGWINCH, then the debugger's, before the next line */
    keys("'show width' Enter");
    cr_expect(shows("in a line is 120.", 15000), "the window did not follow: %s", screen);
    keys("'show height' Enter");
    cr_expect(shows("in a page is 30.", 15000), "%s", screen);
}

/* Ctrl-S on rddbg's own terminal holds its output there, not the session. */
Test(remote, a_console_held_by_ctrl_s_holds_up_no_client)
{
    console_in_tmux();
    keys("C-s");
    snprintf(cs, sizeof(cs), "tcp:server=127.0.0.1,port=%u", port);
    const char *c = client("held", "",
                           "echo 'print 6*7'; sleep 0.5; echo 'print 7*8'; sleep 0.5; "
                           "echo 'print \"after\"'; sleep 1");
    cr_expect(file_has(c, "= 42", 10000), "the session waited for the console: %s", out);
    cr_expect(file_has(c, "= \"after\"", 10000), "%s", out);
    keys("C-q");
    cr_expect(shows("= 56", 15000), "the console lost its output: %s", screen);
}

Test(remote, an_observer_cannot_change_the_servers)
{
    rddbg(getenv("RDQ_TARGET"), false);
    const char *w =
        client("obs", "-observe", "echo '.endsrv 0'; echo '.server tcp:port=1'; sleep 1");
    cr_expect(file_has(w, "you joined as an observer: .endsrv is refused", 5000), "%s", out);
    cr_expect(file_has(w, "you joined as an observer: .server is refused", 5000), "%s", out);
    cr_expect_eq(test_qr("localhost", out, sizeof(out)), 0);
    cr_expect(strstr(out, "Debugger Server - tcp:Port="), "the observer ended the server: %s", out);
    /* a controlling client's .endsrv is told to everyone */
    const char *watch = client("watch2", "-observe", "sleep 3");
    cr_assert(file_has(watch, "joined as an observer", 3000), "%s", out);
    client("ender", "", "echo '.endsrv 0'; sleep 1");
    cr_expect(file_has(watch, "disabled server 0", 5000), "%s", out);
}

Test(remote, a_server_that_never_welcomes_is_left_in_time)
{
    unsigned p = test_free_ports(1);
    char t[64], log[160];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    snprintf(log, sizeof(log), "%s/rdsrv.log", br.dir);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "sleep 30", NULL}; /* not rddbg: silent */
    pid_t s = test_spawn(argv, log, 0);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    snprintf(cmd, sizeof(cmd),
             "sleep 5 | timeout 20 rdq -remote tcp:server=127.0.0.1,port=%u "
             "-timeout 800",
             p);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, "the server did not welcome this client within 800 ms"), "%s", out);
    test_stop(s, SIGTERM);
}

Test(remote, a_debugger_that_ends_at_once_ends_rddbg)
{
    /* its SIGCHLD may come before rddbg listens for it */
    for (int i = 0; i < 20; i++) {
        snprintf(cmd, sizeof(cmd), "timeout 5 rddbg -server tcp:port=%u -noio -- true >/dev/null",
                 test_free_ports(1));
        int rc = test_run(cmd, out, sizeof(out), true);
        cr_expect_eq(rc, 0, "run %d: rddbg hung or failed (%d): %s", i, rc, out);
        if (rc)
            break;
    }
}
