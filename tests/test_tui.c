/* rdq -browse's interactive list in a real terminal: tmux runs it, send-keys types, capture-pane
 * reads the screen; two real brokers answer it, and a third late, through a slow relay. */
#include "helpers.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct test_broker br[2];
static unsigned srv[2];
static char sock[64], outfile[128], out[16384], screen[16384], cmd[4096], want[512];

static void setup(void)
{
    cr_assert_eq(test_two_brokers(br, srv, out, sizeof(out)), 0, "%s", out);
    unsetenv("RDQ_BROKER_SOCK");
    snprintf(sock, sizeof(sock), "rdqtest-%d", (int)getpid());
    snprintf(outfile, sizeof(outfile), "%s/picked", br[0].dir);
}

static void teardown(void)
{
    snprintf(cmd, sizeof(cmd), "tmux -L %s kill-server 2>/dev/null", sock);
    test_run(cmd, out, sizeof(out), true);
    cr_expect(test_logs_clean(&br[0], out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br[1]);
    test_broker_cleanup(&br[0]);
}

TestSuite(tui, .init = setup, .fini = teardown, .timeout = 60);

/* Starts `rdq -browse ARGS` in a 160x40 terminal; what it prints goes to outfile, then its exit
 * status as EXIT=N. */
static void browse(const char *args)
{
    snprintf(cmd, sizeof(cmd),
             "tmux -L %s new-session -d -s t -x 160 -y 40 \"rdq -browse -no-lan -no-config "
             "-host 127.0.0.2:%u -host 127.0.0.3:%u %s >%s; echo EXIT=\\$? >>%s\"",
             sock, br[0].port, br[1].port, args, outfile, outfile);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "tmux: %s", out);
}

static void keys(const char *k)
{
    snprintf(cmd, sizeof(cmd), "tmux -L %s send-keys -t t %s", sock, k);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "tmux: %s", out);
}

/* Polls the screen (up to ms) until it shows `needle`. */
static bool shows(const char *needle, int ms)
{
    return test_tmux_shows(sock, false, needle, ms, screen, sizeof(screen));
}

/* What rdq printed once it ended (up to 5 s): its output, then EXIT=N. */
static const char *printed(void)
{
    test_wait_file(outfile, "EXIT=", 5000, out, sizeof(out));
    return out;
}

static const char *row_string(unsigned port, const char *host, bool password)
{
    snprintf(want, sizeof(want), "tcp:Port=%u%s,Server=%s\nEXIT=0\n", port,
             password ? ",Password=*" : "", host);
    return want;
}

Test(tui, down_and_enter_pick_the_second_row)
{
    browse("");
    cr_assert(shows("2 shown, 2 hosts (0 asking, 0 failed)", 5000), "%s", screen);
    cr_expect(shows("127.0.0.2", 0) && shows("127.0.0.3", 0), "%s", screen);
    keys("Home Down Enter");
    cr_expect_str_eq(printed(), row_string(srv[1], "127.0.0.3", true));
}

Test(tui, typing_filters_and_enter_picks_the_match)
{
    browse("");
    cr_assert(shows("2 shown", 5000), "%s", screen);
    keys("P a s s");
    cr_assert(shows("1 shown", 2000), "%s", screen);
    cr_expect(shows("filter: Pass", 0), "%s", screen);
    keys("Enter");
    cr_expect_str_eq(printed(), row_string(srv[1], "127.0.0.3", true));
}

Test(tui, esc_leaves_with_nothing_printed)
{
    browse("");
    cr_assert(shows("2 shown", 5000), "%s", screen);
    keys("Escape");
    cr_expect_str_eq(printed(), "EXIT=1\n");
}

Test(tui, the_kind_switches_between_the_two_dialogs)
{
    browse("");
    cr_assert(shows("kind: all servers", 5000), "%s", screen);
    keys("Tab");
    cr_assert(shows("kind: debugging servers", 2000), "%s", screen);
    cr_expect(shows("0 shown", 0), "%s", screen); /* both are process servers */
    keys("Tab");
    cr_assert(shows("kind: process and KD servers", 2000), "%s", screen);
    cr_expect(shows("2 shown", 0), "%s", screen);
    keys("q");
    cr_expect_str_eq(printed(), "EXIT=1\n");
}

Test(tui, exec_runs_the_command_with_the_pick_and_passes_its_status)
{
    char args[256], made[128];
    snprintf(made, sizeof(made), "%s/made", br[0].dir);
    snprintf(args, sizeof(args), "-exec 'echo picked {} >%s; exit 7'", made);
    browse(args);
    cr_assert(shows("2 shown", 5000), "%s", screen);
    keys("Home Enter");
    cr_expect_str_eq(printed(), "EXIT=7\n");
    snprintf(want, sizeof(want), "picked tcp:Port=%u,Server=127.0.0.2\n", srv[0]);
    cr_expect(test_wait_file(made, want, 1000, out, sizeof(out)), "%s", out);
}

Test(tui, a_late_host_appears_above_without_moving_the_selection)
{
    /* 127.0.0.1 sorts first and answers late: a relay that waits before it reaches broker 1 */
    unsigned late = test_free_ports(1);
    char listen[64], relay[128];
    snprintf(listen, sizeof(listen), "TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr,fork", late);
    snprintf(relay, sizeof(relay), "SYSTEM:sleep 1.5; exec socat - TCP\\:127.0.0.2\\:%u",
             br[0].port);
    const char *argv[] = {"socat", listen, relay, NULL};
    char log[160], args[128];
    snprintf(log, sizeof(log), "%s/socat.log", br[0].dir);
    pid_t s = test_spawn(argv, log, 0);
    cr_assert(test_wait_listening(late, 2000), "socat does not listen");
    snprintf(args, sizeof(args), "-host 127.0.0.1:%u -timeout 8000", late);
    browse(args);
    cr_assert(shows("2 shown, 3 hosts (1 asking", 5000), "%s", screen);
    keys("Home Down"); /* broker 2's row */
    cr_assert(shows("3 shown, 3 hosts (0 asking", 8000), "%s", screen);
    snprintf(want, sizeof(want), "> 127.0.0.3");
    cr_expect(strstr(screen, want), "the selection moved: %s", screen);
    keys("Enter");
    cr_expect_str_eq(printed(), row_string(srv[1], "127.0.0.3", true));
    test_stop(s, SIGTERM);
}

Test(tui, exec_refuses_without_a_terminal)
{
    snprintf(cmd, sizeof(cmd), "rdq -browse -no-lan -no-config -exec 'echo {}'");
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 2, "%s", out);
    cr_expect(strstr(out, "-exec picks in a terminal"), "%s", out);
    cr_expect_eq(test_run("rdq -browse -exec 'echo none'", out, sizeof(out), true), 2);
    cr_expect(strstr(out, "-exec needs a command with {}"), "%s", out);
}

Test(tui, the_screen_follows_a_resize)
{
    browse("");
    cr_assert(shows("2 shown", 5000), "%s", screen);
    snprintf(cmd, sizeof(cmd), "tmux -L %s resize-window -t t -x 90 -y 12", sock);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "tmux: %s", out);
    /* the help line is drawn on the new last line, cut to the new width */
    bool moved = false;
    for (int i = 0; i < 40 && !moved; i++) {
        shows("", 0);
        int n = 0;
        for (char *p = screen; (p = strchr(p, '\n')); p++)
            n++;
        moved = n <= 12 && strstr(screen, "Up/Down") && strstr(screen, "127.0.0.3");
        usleep(50000);
    }
    cr_expect(moved, "%s", screen);
    keys("Escape");
    cr_expect_str_eq(printed(), "EXIT=1\n");
}

Test(tui, ctrl_c_leaves_and_gives_the_terminal_back)
{
    browse("");
    cr_assert(shows("2 shown", 5000), "%s", screen);
    keys("C-c");
    cr_expect_str_eq(printed(), "EXIT=1\n");
}

Test(tui, exec_gets_the_pick_intact_whatever_a_shell_would_make_of_it)
{
    /* a file that the password row's string would match as a glob, and gdb's way of running a
     * command in a shell of its own */
    char dir[160], evil[256], args[512], made[200], nested[200];
    snprintf(dir, sizeof(dir), "%s/cwd", br[0].dir);
    mkdir(dir, 0755);
    snprintf(evil, sizeof(evil), "%s/tcp:Port=%u,Password=EVIL,Server=127.0.0.3", dir, srv[1]);
    fclose(fopen(evil, "w"));
    snprintf(made, sizeof(made), "%s/made", dir);
    snprintf(nested, sizeof(nested), "%s/nested", dir);
    /* {} bare, in "..." of a nested shell, and in '...' of one (as gdb -ex 'target ... {}'):
     * the command comes from a file, past the shells that start rdq */
    char cmdfile[200];
    snprintf(cmdfile, sizeof(cmdfile), "%s/exec", br[0].dir);
    FILE *f = fopen(cmdfile, "w");
    fprintf(f,
            "cd %s && printf '<%%s>\\n' {} >made && sh -c \"echo {} >nested\" && "
            "sh -c 'echo {} >single'",
            dir);
    fclose(f);
    snprintf(args, sizeof(args), "-exec \\\"\\$(cat %s)\\\"", cmdfile);
    browse(args);
    cr_assert(shows("2 shown", 5000), "%s", screen);
    keys("P a s s Enter");
    cr_expect_str_eq(printed(), "EXIT=0\n");
    snprintf(want, sizeof(want), "<tcp:Port=%u,Password=*,Server=127.0.0.3>\n", srv[1]);
    cr_expect(test_wait_file(made, want, 1000, out, sizeof(out)), "%s", out);
    cr_expect_str_eq(out, want);
    snprintf(want, sizeof(want), "tcp:Port=%u,Password=*,Server=127.0.0.3\n", srv[1]);
    cr_expect(test_wait_file(nested, want, 1000, out, sizeof(out)), "%s", out);
    snprintf(nested, sizeof(nested), "%s/single", dir);
    cr_expect(test_wait_file(nested, want, 1000, out, sizeof(out)), "%s", out);
}

Test(tui, a_small_terminal_says_so_and_picks_nothing_unseen)
{
    browse("");
    cr_assert(shows("2 shown", 5000), "%s", screen);
    snprintf(cmd, sizeof(cmd), "tmux -L %s resize-window -t t -x 60 -y 3", sock);
    test_run(cmd, out, sizeof(out), true);
    cr_assert(shows("the terminal is too small", 2000), "%s", screen);
    keys("Enter");
    snprintf(cmd, sizeof(cmd), "tmux -L %s resize-window -t t -x 160 -y 40", sock);
    test_run(cmd, out, sizeof(out), true);
    cr_assert(shows("2 shown", 2000), "Enter picked a row no one saw: %s", screen);
    keys("Escape");
    cr_expect_str_eq(printed(), "EXIT=1\n");
}

Test(tui, failed_sources_and_an_empty_list_are_shown)
{
    char closed[64];
    snprintf(closed, sizeof(closed), "127.0.0.1:%u", test_free_ports(1));
    setenv("RDQ_DNS_SERVERS", closed, 1); /* refused at once */
    browse("-domain nothing.test -kind debugger");
    cr_assert(shows("failed: domain nothing.test: no brokers listed", 5000), "%s", screen);
    cr_expect(shows("(no server found that the kind and filter let through)", 2000), "%s", screen);
    keys("q");
    cr_expect_str_eq(printed(), "EXIT=1\n");
}
