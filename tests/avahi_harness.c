#include "avahi_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_MS 8000

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "we");
    if (!f)
        return -errno;
    fputs(text, f);
    return fclose(f) == 0 ? 0 : -EIO;
}

static int write_configs(const struct test_avahi *a)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
             " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
             "<busconfig>\n  <type>system</type>\n  <listen>unix:path=%s/bus.sock</listen>\n"
             "  <auth>EXTERNAL</auth>\n  <pidfile>%s/dbus.pid</pidfile>\n"
             "  <policy context=\"default\">\n    <allow user=\"*\"/>\n    <allow own=\"*\"/>\n"
             "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
             "    <allow receive_sender=\"*\"/>\n  </policy>\n</busconfig>\n",
             a->dir, a->dir);
    int rc = write_file(a->dir, "dbus.conf", text);
    snprintf(text, sizeof(text),
             "[server]\nhost-name=%s\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=lo,rdqd0\n"
             "enable-dbus=yes\n%s\n[wide-area]\nenable-wide-area=no\n\n"
             "[publish]\npublish-hinfo=no\npublish-workstation=no\n",
             a->host, a->extra);
    return rc ? rc : write_file(a->dir, "avahi.conf", text);
}

/* A child that dies with this process, its output to `log` (NULL: /dev/null). */
static pid_t child(const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(126);
    int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
        _exit(126);
    return 0;
}

pid_t test_avahi_spawn(const char *const argv[])
{
    pid_t pid = child(NULL);
    if (pid == 0) {
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

void test_avahi_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 300; i++) { /* 3 s, then no more waiting */
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Whether `name` is PREFIX-PID-... of a process that is gone. */
static bool stale(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    int pid = 0;
    return strncmp(name, prefix, n) == 0 && sscanf(name + n, "%d-", &pid) == 1 && pid > 0 &&
           kill(pid, 0) != 0 && errno == ESRCH;
}

/* What test processes killed at a timeout, before their cleanup, left: their namespaces and
 * directories (their daemons died with them). */
static void remove_stale(const char *dir, const char *prefix, const char *fmt)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char cmd[300];
        if (!stale(e->d_name, prefix))
            continue;
        snprintf(cmd, sizeof(cmd), fmt, e->d_name);
        run(cmd);
    }
    if (d)
        closedir(d);
}

bool test_avahi_usable(char *why, size_t len)
{
    if (geteuid() != 0) {
        snprintf(why, len, "the avahi harness needs root (a network namespace per daemon)");
        return false;
    }
    if (access("/usr/sbin/avahi-daemon", X_OK) != 0 || run("command -v dbus-daemon "
                                                           "avahi-browse ip >/dev/null") != 0) {
        snprintf(why, len, "avahi-daemon, avahi-utils, dbus or iproute2 is missing");
        return false;
    }
    return true;
}

/* Whether the daemon on our bus says it runs (GetState: 2). */
static bool daemon_running(void)
{
    FILE *f = popen("dbus-send --system --print-reply --reply-timeout=1000 "
                    "--dest=org.freedesktop.Avahi / org.freedesktop.Avahi.Server.GetState "
                    "2>/dev/null",
                    "r");
    if (!f)
        return false;
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    pclose(f);
    return strstr(buf, "int32 2") != NULL;
}

static bool wait_path(const char *path, int ms)
{
    for (int waited = 0; waited < ms; waited += 10) {
        if (access(path, F_OK) == 0)
            return true;
        usleep(10000);
    }
    return false;
}

static int bus_start(struct test_avahi *a)
{
    char conf[96], sock[96], log[96];
    snprintf(conf, sizeof(conf), "--config-file=%s/dbus.conf", a->dir);
    snprintf(sock, sizeof(sock), "%s/bus.sock", a->dir);
    snprintf(log, sizeof(log), "%s/dbus.log", a->dir);
    a->dbus = child(log);
    if (a->dbus == 0) {
        execlp("dbus-daemon", "dbus-daemon", conf, "--nofork", "--nopidfile", (char *)NULL);
        _exit(127);
    }
    snprintf(a->addr, sizeof(a->addr), "unix:path=%s", sock);
    setenv("DBUS_SYSTEM_BUS_ADDRESS", a->addr, 1);
    return a->dbus > 0 && wait_path(sock, READY_MS) ? 0 : -ETIMEDOUT;
}

/* In the child: into the namespace, with a /run of its own (avahi-daemon's pid file and
 * socket), then avahi-daemon. */
static void exec_daemon(const struct test_avahi *a)
{
    char path[96], conf[96];
    snprintf(path, sizeof(path), "/run/netns/%s", a->ns);
    snprintf(conf, sizeof(conf), "%s/avahi.conf", a->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0 || unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") < 0)
        _exit(126);
    execl("/usr/sbin/avahi-daemon", "avahi-daemon", "-f", conf, "--no-drop-root", "--no-chroot",
          "--no-rlimits", (char *)NULL);
    _exit(127);
}

int test_avahi_daemon_start(struct test_avahi *a)
{
    char log[96];
    snprintf(log, sizeof(log), "%s/avahi.log", a->dir);
    a->daemon = child(log);
    if (a->daemon == 0)
        exec_daemon(a);
    if (a->daemon < 0)
        return -errno;
    for (int waited = 0; waited < READY_MS; waited += 50) {
        if (daemon_running())
            return 0;
        if (waitpid(a->daemon, NULL, WNOHANG) == a->daemon) {
            a->daemon = 0;
            return -ECHILD;
        }
        usleep(50000);
    }
    return -ETIMEDOUT;
}

void test_avahi_daemon_stop(struct test_avahi *a)
{
    test_avahi_kill(a->daemon);
    a->daemon = 0;
}

int test_avahi_start(struct test_avahi *a, bool daemon)
{
    static unsigned n;
    memset(a, 0, sizeof(*a));
    remove_stale("/run/netns", "rdqt-", "ip netns del '%s' 2>/dev/null");
    remove_stale("/tmp", "rdq-avahi-", "rm -rf '/tmp/%s'");
    snprintf(a->dir, sizeof(a->dir), "/tmp/rdq-avahi-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(a->dir))
        return -errno;
    chmod(a->dir, 0755);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(a->ns, sizeof(a->ns), "rdqt-%d-%u", (int)getpid(), n++);
    snprintf(a->host, sizeof(a->host), "rdqt%d-%u-%lx", (int)getpid(), n,
             (unsigned long)ts.tv_nsec & 0xfff);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "ip netns add %s && ip -n %s link set lo up", a->ns, a->ns);
    int rc = write_configs(a);
    /* ip netns add, run by two workers at once, can lose a race on /run/netns: try again */
    for (int tries = 0; rc == 0 && run(cmd) != 0; tries++) {
        char del[96];
        snprintf(del, sizeof(del), "ip netns del %s 2>/dev/null", a->ns);
        run(del);
        if (tries == 4)
            rc = -EPERM;
        usleep(100000);
    }
    if (rc == 0)
        rc = bus_start(a);
    if (rc == 0 && daemon)
        rc = test_avahi_daemon_start(a);
    return rc;
}

int test_avahi_daemon_config(struct test_avahi *a, const char *lines)
{
    test_avahi_daemon_stop(a);
    snprintf(a->extra, sizeof(a->extra), "%s\n", lines);
    int rc = write_configs(a);
    return rc ? rc : test_avahi_daemon_start(a);
}

int test_avahi_add_iface(struct test_avahi *a)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd),
             "ip -n %s link add rdqd0 type bridge && ip -n %s link set rdqd0 up && "
             "ip -n %s addr add 10.213.0.1/24 dev rdqd0",
             a->ns, a->ns, a->ns);
    return run(cmd) == 0 ? 0 : -EIO;
}

void test_avahi_no_bus(struct test_avahi *a)
{
    snprintf(a->addr, sizeof(a->addr), "unix:path=%s/no-bus.sock", a->dir[0] ? a->dir : "/tmp");
    setenv("DBUS_SYSTEM_BUS_ADDRESS", a->addr, 1);
}

void test_avahi_cleanup(struct test_avahi *a)
{
    test_avahi_daemon_stop(a);
    test_avahi_kill(a->dbus);
    a->dbus = 0;
    char cmd[160];
    if (a->ns[0]) {
        snprintf(cmd, sizeof(cmd), "ip netns del %s", a->ns);
        if (run(cmd) != 0)
            fprintf(stderr, "cannot delete network namespace %s\n", a->ns);
        a->ns[0] = '\0';
    }
    if (a->dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", a->dir);
        if (run(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", a->dir);
        a->dir[0] = '\0';
    }
}
