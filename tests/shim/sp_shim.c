/* An LD_PRELOAD shim that teaches libserialport pseudo-terminals, so that the tests run its path
 * on a pty pair: a pty has no /sys/class/tty entry (libserialport's lookup reads that link) and
 * no modem lines (sp_open asks for them with TIOCMGET). Each call it answers is logged to
 * $RDQ_SP_SHIM_LOG, so that a test can see that libserialport's path ran. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void note(const char *what, const char *detail)
{
    const char *path = getenv("RDQ_SP_SHIM_LOG");
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    if (fd < 0)
        return;
    char line[512];
    int n = snprintf(line, sizeof(line), "%d %s %s\n", (int)getpid(), what, detail);
    if (n > 0 && write(fd, line, (size_t)n) < 0) {
    }
    close(fd);
}

ssize_t readlink(const char *path, char *buf, size_t len)
{
    static ssize_t (*real)(const char *, char *, size_t);
    if (!real)
        real = (ssize_t(*)(const char *, char *, size_t))dlsym(RTLD_NEXT, "readlink");
    if (strncmp(path, "/sys/class/tty/pts/", 19) == 0) {
        char name[256]; /* libserialport reads the link into the buffer that holds its name */
        snprintf(name, sizeof(name), "%s", path);
        note("readlink", name);
        int n = snprintf(buf, len, "../../devices/pts-shim/tty/%s", name + 15);
        return n < (int)len ? n : (ssize_t)len;
    }
    return real(path, buf, len);
}

/* libserialport checks that the entry exists before it reads the link */
int __lxstat(int ver, const char *path, struct stat *st);
int __lxstat(int ver, const char *path, struct stat *st)
{
    static int (*real)(int, const char *, struct stat *);
    if (!real)
        real = (int (*)(int, const char *, struct stat *))dlsym(RTLD_NEXT, "__lxstat");
    if (strncmp(path, "/sys/class/tty/pts/", 19) == 0) {
        memset(st, 0, sizeof(*st));
        st->st_mode = S_IFLNK | 0777;
        note("lstat", path);
        return 0;
    }
    return real(ver, path, st);
}

static int is_pty(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136 &&
           major(st.st_rdev) <= 143;
}

int ioctl(int fd, unsigned long req, ...)
{
    static int (*real)(int, unsigned long, void *);
    if (!real)
        real = (int (*)(int, unsigned long, void *))dlsym(RTLD_NEXT, "ioctl");
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if ((req == TIOCMGET || req == TIOCMSET || req == TIOCMBIS || req == TIOCMBIC) && is_pty(fd)) {
        if (req == TIOCMGET)
            *(int *)arg = TIOCM_DTR | TIOCM_RTS | TIOCM_CTS | TIOCM_DSR;
        note(req == TIOCMGET ? "TIOCMGET" : "TIOCMSET", "pty");
        return 0;
    }
    return real(fd, req, arg);
}
