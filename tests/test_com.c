/* com end to end through the real programs, on a "cable" of two pseudo-terminal pairs: channels
 * served and dialed by processes of their own at both ends, data intact both ways, a channel
 * nobody serves, a line that garbles and drops bytes, the line owner killed, baud rates that do
 * not match, passwords, the listing, and a forward whose com dials wait on the loop. */
#include "helpers.h"
#include "ptyline.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static struct test_broker br;
static struct ptyline line;
static char out[65536], want[1024], cmd[2048];

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    memset(&line, 0, sizeof(line));
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
}

static void teardown(void)
{
    test_broker_stop(&br, SIGTERM);
    test_stop_all();
    usleep(400 * 1000); /* the line owners end once their last user has gone */
    if (line.a[0])
        ptyline_stop(&line);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br);
}

TestSuite(com, .init = setup, .fini = teardown, .timeout = 120);

static void cable(void)
{
    cr_assert_eq(ptyline_start(&line), 0, "no pseudo-terminals");
}

/* rdsrv -t com:port=DEV,baud=B,channel=C[,extra] -stub STUB, output in <dir>/<name>.log. */
static pid_t serve(const char *dev, int chan, const char *extra, const char *stub, const char *name)
{
    char t[256], log[192], text[4096];
    snprintf(t, sizeof(t), "com:port=%s,baud=115200,channel=%d%s", dev, chan, extra);
    snprintf(log, sizeof(log), "%s/%s.log", br.dir, name);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", stub, NULL};
    pid_t pid = test_spawn(argv, log, 0);
    cr_assert(test_wait_file(log, "Server started", 5000, text, sizeof(text)), "%s", text);
    return pid;
}

static const char *client(const char *dev, int chan, const char *extra)
{
    static char c[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(c[i], sizeof(c[i]), "com:port=%s,baud=115200,channel=%d%s", dev, chan, extra);
    return c[i];
}

/* A file of `n` random bytes in the broker's directory. */
static const char *data_file(const char *name, size_t n)
{
    static char path[4][192];
    static int i;
    i = (i + 1) % 4;
    snprintf(path[i], sizeof(path[i]), "%s/%s", br.dir, name);
    snprintf(cmd, sizeof(cmd), "head -c %zu /dev/urandom > %s", n, path[i]);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0);
    return path[i];
}

/* Two clients at once, each its own process, on channels 3 and 7 of the cable's B end: the
 * files f3 and f7 come back whole from servers that echo. */
static void echo_both(const char *f3, const char *f7, int seconds)
{
    snprintf(cmd, sizeof(cmd),
             "(timeout %d rdq -premote '%s' < %s | cmp - %s && echo ok3) & "
             "(timeout %d rdq -premote '%s' < %s | cmp - %s && echo ok7) & wait",
             seconds, client(line.b, 3, ""), f3, f3, seconds, client(line.b, 7, ""), f7, f7);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect(strstr(out, "ok3") && strstr(out, "ok7"), "%s", out);
}

Test(com, two_channels_carry_two_sessions_at_once_both_ways)
{
    cable();
    pid_t s3 = serve(line.a, 3, "", "cat", "s3");
    pid_t s7 = serve(line.a, 7, "", "cat", "s7");
    const char *one = data_file("one", 1), *big3 = data_file("big3", 1 << 20),
               *big7 = data_file("big7", 3 << 19);
    /* each client its own process, both at once; every byte comes back */
    echo_both(big3, big7, 60);
    snprintf(cmd, sizeof(cmd), "timeout 20 rdq -premote '%s' < %s | cmp - %s && echo ok1",
             client(line.b, 7, ""), one, one);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "ok1\n");
    test_stop(s3, SIGTERM);
    test_stop(s7, SIGTERM);
}

Test(com, a_channel_nobody_serves_is_refused_clearly)
{
    cable();
    pid_t s = serve(line.a, 3, "", "cat", "s3");
    snprintf(cmd, sizeof(cmd), "echo x | timeout 20 rdq -premote '%s'", client(line.b, 9, ""));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    snprintf(want, sizeof(want), "rdq: com: nobody serves channel 9 of %s\n", line.a);
    cr_expect_str_eq(out, want);
    /* and the served one still answers */
    snprintf(cmd, sizeof(cmd), "echo still | timeout 20 rdq -premote '%s'", client(line.b, 3, ""));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "still\n");
    test_stop(s, SIGTERM);
}

Test(com, a_line_that_garbles_and_drops_bytes_loses_no_data)
{
    line.garble_every = 20000;
    line.drop_every = 30011;
    line.drop_len = 3;
    line.damage_after = 4096;
    cable();
    pid_t s3 = serve(line.a, 3, "", "cat", "s3");
    pid_t s7 = serve(line.a, 7, "", "cat", "s7");
    const char *f3 = data_file("f3", 300000), *f7 = data_file("f7", 200000);
    /* the damage is on the way from the servers' end: the echoes cross it */
    echo_both(f3, f7, 90);
    cr_expect_gt(line.garbled, 5, "the line garbled only %zu bytes", line.garbled);
    cr_expect_gt(line.dropped, 5, "the line dropped only %zu bytes", line.dropped);
    test_stop(s3, SIGTERM);
    test_stop(s7, SIGTERM);
}

Test(com, a_frame_lost_again_and_again_costs_time_not_the_connection)
{
    /* a burst of noise takes one frame of the echo five times: first sent, sent again on the
     * receiver's duplicate ACKs, and after three timeouts in a row; the sender backs off no
     * further than a few seconds, its next copy crosses, and nothing is lost */
    line.lose_chan = 3;
    line.lose_seq = 40;
    line.lose_copies = 5;
    cable();
    pid_t s3 = serve(line.a, 3, "", "cat", "s3");
    const char *f = data_file("f3", 100000);
    snprintf(cmd, sizeof(cmd), "timeout 60 rdq -premote '%s' < %s | cmp - %s && echo ok3",
             client(line.b, 3, ""), f, f);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "ok3\n");
    cr_expect_eq(line.lost, 5, "the line took %zu copies of the frame", line.lost);
    test_stop(s3, SIGTERM);
}

Test(com, a_connection_whose_frames_never_cross_is_given_up_and_says_so)
{
    /* the client's frame 40 never reaches the server's end, however often it goes: after six
     * timeouts in a row and 10 s the client's end gives the connection up, and the client fails
     * saying why rather than ending as if the server had */
    line.lose_chan = 3;
    line.lose_seq = 40;
    line.lose_copies = 1000;
    line.lose_from_b = true;
    cable();
    pid_t s3 = serve(line.a, 3, "", "cat", "s3");
    const char *f = data_file("f3", 100000);
    snprintf(cmd, sizeof(cmd), "timeout 60 rdq -premote '%s' < %s > /dev/null; echo rc=$?",
             client(line.b, 3, ""), f);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    snprintf(want, sizeof(want),
             "rdq: com: the connection on channel 3 of %s was given up: the other end took none "
             "of what went again 6 times in 10 s\nrc=1\n",
             line.b);
    cr_expect_str_eq(out, want);
    test_stop(s3, SIGTERM);
}

Test(com, a_stub_that_ends_before_its_client_has_read_its_output_loses_none)
{
    /* the stub's process ends at once and what it started writes 1 MB after it; the client
     * ends its input at once and reads nothing for 3 s, past the grace rdsrv gives a client
     * after its stub ends: the whole of the output still crosses the line, and the tail is
     * not cut off */
    cable();
    const char *f = data_file("late", 1 << 20);
    char stub[256];
    snprintf(stub, sizeof(stub), "cat %s &", f);
    pid_t s = serve(line.a, 5, "", stub, "s5");
    snprintf(cmd, sizeof(cmd),
             "timeout 60 rdq -premote '%s' </dev/null | (sleep 3; cat) | cmp - %s && echo ok5",
             client(line.b, 5, ""), f);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "ok5\n");
    test_stop(s, SIGTERM);
}

/* The pid of the line owner of `dev`: the process that holds its lock file. */
static pid_t owner_of(const char *dev)
{
    char lock[256], name[96];
    snprintf(name, sizeof(name), "com-%s.lock", dev);
    for (char *p = name; *p; p++)
        if (*p == '/')
            *p = '_';
    snprintf(lock, sizeof(lock), "%s/pipe/%s", br.dir, name);
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = 0;
    while (d && !found && (e = readdir(d))) {
        char fds[288], link[512], target[512];
        snprintf(fds, sizeof(fds), "/proc/%s/fd", e->d_name);
        DIR *f = atoi(e->d_name) > 0 ? opendir(fds) : NULL;
        struct dirent *fe;
        while (f && !found && (fe = readdir(f))) {
            snprintf(link, sizeof(link), "%s/%s", fds, fe->d_name);
            ssize_t n = readlink(link, target, sizeof(target) - 1);
            if (n > 0 && (target[n] = '\0', strcmp(target, lock) == 0))
                found = (pid_t)atoi(e->d_name);
        }
        if (f)
            closedir(f);
    }
    if (d)
        closedir(d);
    return found;
}

/* Ends the process whose pid a test's shell wrote to DIR/NAME: a client's input held open. */
static void end_holder(const char *name)
{
    char path[192];
    snprintf(path, sizeof(path), "%s/%s", br.dir, name);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f && fscanf(f, "%d", &pid) == 1 && pid > 0)
        kill(pid, SIGTERM);
    if (f)
        fclose(f);
}

Test(com, the_line_owner_killed_fails_clearly_and_a_new_one_serves)
{
    cable();
    pid_t s3 = serve(line.a, 3, "", "cat", "s3");
    pid_t s7 = serve(line.a, 7, "", "sh -c 'cat; exec sleep 30'", "s7");
    /* a session on channel 7 that stays open */
    snprintf(cmd, sizeof(cmd),
             "(echo first; sleep 30 & echo $! >%s/c7.sleep; wait) | "
             "{ timeout 60 rdq -premote '%s' > %s/c7.out 2>&1; echo $? > %s/c7.rc; }",
             br.dir, client(line.b, 7, ""), br.dir, br.dir);
    char bg[2304];
    snprintf(bg, sizeof(bg), "(%s) >/dev/null 2>&1 &", cmd);
    cr_assert_eq(test_run(bg, out, sizeof(out), true), 0);
    char path[192];
    snprintf(path, sizeof(path), "%s/c7.out", br.dir);
    cr_assert(test_wait_file(path, "first", 10000, out, sizeof(out)), "%s", out);
    pid_t owner = owner_of(line.b);
    cr_assert_gt(owner, 0, "no owner holds the line %s", line.b);
    kill(owner, SIGKILL);
    /* the client of channel 7 ends at once, not after its 30 s */
    snprintf(path, sizeof(path), "%s/c7.rc", br.dir);
    cr_expect(test_wait_file(path, "\n", 5000, out, sizeof(out)), "the client hangs");
    /* a new client starts a new owner, and channel 3 serves it */
    snprintf(cmd, sizeof(cmd), "echo again | timeout 20 rdq -premote '%s'", client(line.b, 3, ""));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "again\n");
    test_stop(s3, SIGTERM);
    test_stop(s7, SIGTERM);
    end_holder("c7.sleep");
}

Test(com, a_user_of_the_line_owner_that_asks_nothing_is_let_go)
{
    /* a process of the line's user connects to its owner and says nothing: after 10 s its place
     * goes, as it would keep the owner running for ever */
    cable();
    pid_t s = serve(line.a, 3, "", "cat", "s3");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/pipe/com-%s", br.dir, line.a);
    for (char *p = sa.sun_path + strlen(br.dir) + strlen("/pipe/"); *p; p++)
        *p = *p == '/' ? '_' : *p;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s: %s", sa.sun_path,
                 strerror(errno));
    cr_expect(test_fd_read_until(fd, NULL, 15000, out, sizeof(out)),
              "the owner still holds a user that asked nothing");
    close(fd);
    test_stop(s, SIGTERM);
}

Test(com, baud_rates_that_differ_are_named)
{
    cable();
    pid_t s = serve(line.a, 3, "", "cat", "s3");
    snprintf(cmd, sizeof(cmd), "echo x | timeout 20 rdq -premote com:port=%s,baud=9600,channel=3",
             line.b);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect_str_eq(out, "rdq: com: the two ends of the line use different baud rates (9600 and "
                          "115200)\n");
    test_stop(s, SIGTERM);
}

Test(com, no_other_end_is_a_timeout_that_says_what_the_line_saw)
{
    cable();
    snprintf(cmd, sizeof(cmd), "echo x | rdq -premote '%s' -timeout 1000", client(line.b, 3, ""));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    snprintf(want, sizeof(want),
             "rdq: com: no answer on %s within the time allowed (0 valid frames", line.b);
    cr_expect(strstr(out, want), "%s", out);
}

Test(com, passwords_and_the_listing)
{
    cable();
    pid_t s = serve(line.a, 3, ",password=Secret12", "cat", "s3");
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want),
             "Servers on localhost:\nRemote Process Server - "
             "com:Port=%s,Baud=115200,Channel=3,Password=*\n",
             line.a);
    cr_expect_str_eq(out, want);
    snprintf(cmd, sizeof(cmd), "echo secret-ok | timeout 20 rdq -premote '%s'",
             client(line.b, 3, ",password=Secret12"));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "secret-ok\n");
    snprintf(cmd, sizeof(cmd), "echo x | timeout 20 rdq -premote '%s'",
             client(line.b, 3, ",password=Wrong1"));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, "Error 0x80004005"), "%s", out);
    cr_expect_null(strstr(out, "Wrong1"), "%s", out);
    test_stop(s, SIGTERM);
}

Test(com, the_libserialport_path_on_a_pseudo_terminal)
{
    /* libserialport opens and sets up both ends (a shim teaches it ptys, and says when it was
     * asked), and a session crosses */
    const char *shim = getenv("RDQ_SP_SHIM");
    cr_assert_not_null(shim, "RDQ_SP_SHIM names the test shim");
    char log[192], env[512];
    snprintf(log, sizeof(log), "%s/shim.log", br.dir);
    snprintf(env, sizeof(env), "%s:%s", shim, getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
    setenv("LD_PRELOAD", env, 1);
    setenv("RDQ_COM_LIBSERIALPORT", "1", 1);
    setenv("RDQ_SP_SHIM_LOG", log, 1);
    setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=1:abort_on_error=1", 1);
    cable();
    pid_t s = serve(line.a, 3, "", "cat", "s3");
    snprintf(cmd, sizeof(cmd), "echo through-libserialport | timeout 20 rdq -premote '%s'",
             client(line.b, 3, ""));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "through-libserialport\n");
    unsetenv("LD_PRELOAD");
    char text[8192], want_a[96], want_b[96];
    cr_assert(test_wait_file(log, "TIOCMGET", 2000, text, sizeof(text)), "%s", text);
    snprintf(want_a, sizeof(want_a), "readlink /sys/class/tty/%s\n", line.a + 5);
    snprintf(want_b, sizeof(want_b), "readlink /sys/class/tty/%s\n", line.b + 5);
    cr_expect(strstr(text, want_a) && strstr(text, want_b),
              "libserialport did not look up both "
              "ends: %s",
              text);
    test_stop(s, SIGTERM);
}

Test(com, a_user_dials_the_same_pty_again_after_its_owner_ended)
{
    /* as another user than root, for whom TIOCEXCL would hold: a line owner that ended leaves
     * the pty open to the next one */
    if (geteuid() != 0)
        cr_skip_test("needs root, to run the ends as another user");
    cable();
    cr_assert_eq(fchown(line.sa, 65534, 65534), 0);
    cr_assert_eq(fchown(line.sb, 65534, 65534), 0);
    char pipes[192];
    snprintf(pipes, sizeof(pipes), "%s/nobody-pipes", br.dir);
    cr_assert_eq(mkdir(pipes, 0700), 0);
    cr_assert_eq(chown(pipes, 65534, 65534), 0);
    setenv("RDQ_PIPE_DIR", pipes, 1);
    char t[160], log[192], text[4096];
    snprintf(t, sizeof(t), "com:port=%s,baud=115200,channel=3", line.a);
    snprintf(log, sizeof(log), "%s/nobody.log", br.dir);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    pid_t s = test_spawn(argv, log, 65534);
    cr_assert(test_wait_file(log, "Server started", 5000, text, sizeof(text)), "%s", text);
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd),
                 "echo again-%d | setpriv --reuid=65534 --regid=65534 --clear-groups timeout 20 "
                 "rdq -premote '%s'",
                 i, client(line.b, 3, ""));
        cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "dial %d: %s", i, out);
        snprintf(want, sizeof(want), "again-%d\n", i);
        cr_expect_str_eq(out, want);
        usleep(600 * 1000); /* the client's line owner ends with it */
    }
    test_stop(s, SIGTERM);
}

/* A cable, a server of channel 7 that echoes, and a client in the background whose input says
 * "first" and then stays open (its holder's pid in c7.sleep): its output, then "rc=N" once it
 * ends, go to c7.out, whose path is put in `path`. Returns the server. */
static pid_t session_held_open(char *path, size_t len)
{
    cable();
    pid_t s7 = serve(line.a, 7, "", "cat", "s7");
    snprintf(cmd, sizeof(cmd),
             "(echo first; sleep 60 & echo $! >%s/c7.sleep; wait) | "
             "{ timeout 60 rdq -premote '%s' > %s/c7.out 2>&1; echo rc=$? >> %s/c7.out; }",
             br.dir, client(line.b, 7, ""), br.dir, br.dir);
    char bg[2304];
    snprintf(bg, sizeof(bg), "(%s) >/dev/null 2>&1 &", cmd);
    cr_assert_eq(test_run(bg, out, sizeof(out), true), 0);
    snprintf(path, len, "%s/c7.out", br.dir);
    cr_assert(test_wait_file(path, "first", 10000, out, sizeof(out)), "%s", out);
    return s7;
}

Test(com, a_connection_whose_other_end_went_silent_ends_and_frees_its_channel)
{
    /* the cable pulled during a session, its client killed: the server's end has nothing to
     * send, and still learns in time (10 s of silence) that the other end has gone */
    char path[192];
    pid_t s7 = session_held_open(path, sizeof(path));
    line.cut = 1;
    snprintf(cmd, sizeof(cmd), "pkill -KILL -f 'rdq -premote com:port=%s,'", line.b);
    test_run(cmd, out, sizeof(out), true); /* this cable's client only */
    sleep(12);
    line.cut = 0;
    snprintf(cmd, sizeof(cmd), "echo after | timeout 20 rdq -premote '%s'", client(line.b, 7, ""));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "after\n");
    test_stop(s7, SIGTERM);
    end_holder("c7.sleep"); /* the first client's input ends */
}

Test(com, a_connection_lost_on_a_pulled_cable_ends_its_client_with_why)
{
    /* the cable pulled during a session whose client still has things to send: the client does
     * not take the lost connection for the server's end (exit 0, output cut short), but fails
     * and says why */
    char path[192];
    pid_t s7 = session_held_open(path, sizeof(path));
    line.cut = 1;
    cr_expect(test_wait_file(path, "rc=", 20000, out, sizeof(out)), "the client hangs: %s", out);
    snprintf(want, sizeof(want),
             "rdq: com: the connection on channel 7 of %s was lost: nothing came from the other "
             "end for 10 s\nrc=1\n",
             line.b);
    cr_expect(strstr(out, want), "%s", out);
    line.cut = 0;
    test_stop(s7, SIGTERM);
    end_holder("c7.sleep");
}

/* rdq -premote com:... -forward [ADDR:]PORT (log fwd.log): the port it forwards from. */
static unsigned forward(const char *t, pid_t *pid)
{
    char log[192], text[4096];
    snprintf(log, sizeof(log), "%s/fwd.log", br.dir);
    const char *argv[] = {"rdq", "-premote", t, "-forward", "0", "-timeout", "60000", NULL};
    *pid = test_spawn(argv, log, 0);
    cr_assert(test_wait_file(log, "rdq: forwarding ", 5000, text, sizeof(text)), "%s", text);
    const char *at = strstr(text, "rdq: forwarding "), *colon = at ? strchr(at + 16, ' ') : NULL;
    while (colon && colon > at && colon[-1] != ':')
        colon--;
    unsigned port = 0;
    cr_assert(colon && sscanf(colon, "%u", &port) == 1 && port > 0, "%s", text);
    return port;
}

Test(com, a_forward_answers_its_other_connections_while_one_com_dial_waits)
{
    /* the cable pulled: the dial that took the channel waits for the other end, and the forward
     * still takes the next connection and closes it at once (the channel is busy); once the
     * cable is back, the first is served */
    cable();
    pid_t s3 = serve(line.a, 3, "", "cat", "s3"), fwd;
    unsigned port = forward(client(line.b, 3, ""), &fwd);
    line.cut = 1;
    int fd[2] = {test_connect_port(port), test_connect_port(port)};
    cr_assert(fd[0] >= 0 && fd[1] >= 0, "cannot connect to the forward");
    char log[192];
    snprintf(log, sizeof(log), "%s/fwd.log", br.dir);
    bool answered = test_wait_file(log, "is busy on this end; closed it", 20000, out, sizeof(out));
    line.cut = 0;
    cr_expect(answered, "no connection was answered while a dial waited: %s", out);
    cr_expect_eq(test_fds_echoed(fd, 2, "ping\n", 20000), 1,
                 "the waiting dial was not served once the cable was back");
    test_stop(fwd, SIGTERM);
    test_stop(s3, SIGTERM);
}
