/* The sink for the loopback floor: accepts connections and closes them at once, in the simplest
 * loop there is (blocking accept), so that what the floor measures is the kernel's connection
 * set-up and tear-down. */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <unistd.h>

static int sink_listen(const struct bench_opts *o)
{
    struct sockaddr_storage sa;
    socklen_t len;
    if (bench_addr(o, &sa, &len) != 0)
        return -1;
    int one = 1, fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sa.ss_family == AF_UNIX)
        unlink(((struct sockaddr_un *)&sa)->sun_path);
    if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, SOMAXCONN) < 0) {
        fprintf(stderr, "rdq_bench floor: cannot listen: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void sink_loop(int lfd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the harness */
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            close(fd);
        else if (errno != EINTR && errno != ECONNABORTED)
            _exit(1);
    }
}

pid_t bench_sink_spawn(const struct bench_opts *o)
{
    int lfd = sink_listen(o);
    if (lfd < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0)
        sink_loop(lfd);
    close(lfd);
    if (pid < 0)
        fprintf(stderr, "rdq_bench floor: fork: %s\n", strerror(errno));
    return pid;
}
