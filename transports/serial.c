/* Serial lines: a real port through libserialport (baud, 8N1, no flow control), a
 * pseudo-terminal (QEMU's -serial pty, a socat pair), which libserialport refuses, through
 * termios. Either way the line is opened non-blocking and for this process alone (flock and
 * TIOCEXCL), and what it held from before is flushed. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libserialport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

struct rdt_serial {
    struct sp_port *port; /* NULL for a pseudo-terminal */
    int fd;
};

/* A pseudo-terminal's end (Unix 98: majors 136 to 143). */
static bool is_pty(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136 &&
           major(st.st_rdev) <= 143;
}

static const struct {
    uint32_t baud;
    speed_t speed;
} speeds[] = {
    {9600, B9600},       {19200, B19200},     {38400, B38400},     {57600, B57600},
    {115200, B115200},   {230400, B230400},   {460800, B460800},   {500000, B500000},
    {921600, B921600},   {1000000, B1000000}, {1500000, B1500000}, {2000000, B2000000},
    {3000000, B3000000}, {4000000, B4000000},
};

/* A pseudo-terminal carries bytes at memory speed whatever its rate: raw, 8N1, the rate set
 * where termios names it. */
static int open_pty(struct rdt_serial *s, const char *dev, uint32_t baud, char *err, size_t errlen)
{
    struct termios t;
    if (tcgetattr(s->fd, &t) < 0)
        return rdt_errf(-errno, err, errlen, "com: %s: %s", dev, strerror(errno));
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    for (size_t i = 0; i < sizeof(speeds) / sizeof(speeds[0]); i++)
        if (speeds[i].baud == baud)
            cfsetspeed(&t, speeds[i].speed);
    if (tcsetattr(s->fd, TCSANOW, &t) < 0)
        return rdt_errf(-errno, err, errlen, "com: %s: %s", dev, strerror(errno));
    return 0;
}

static int sp_fail(const char *dev, const char *what, char *err, size_t errlen)
{
    char *m = sp_last_error_message();
    int e = errno ? errno : EIO;
    rdt_errf(-e, err, errlen, "com: %s: %s: %s", dev, what, m ? m : strerror(e));
    sp_free_error_message(m);
    return -e;
}

static int open_port(struct rdt_serial *s, const char *dev, uint32_t baud, char *err, size_t errlen)
{
    if (sp_get_port_by_name(dev, &s->port) != SP_OK)
        return sp_fail(dev, "not a serial port", err, errlen);
    if (sp_open(s->port, SP_MODE_READ_WRITE) != SP_OK)
        return sp_fail(dev, "cannot open", err, errlen);
    if (sp_set_baudrate(s->port, (int)baud) != SP_OK || sp_set_bits(s->port, 8) != SP_OK ||
        sp_set_parity(s->port, SP_PARITY_NONE) != SP_OK || sp_set_stopbits(s->port, 1) != SP_OK ||
        sp_set_flowcontrol(s->port, SP_FLOWCONTROL_NONE) != SP_OK)
        return sp_fail(dev, "cannot set it up (baud rate, 8N1, no flow control)", err, errlen);
    if (sp_get_port_handle(s->port, &s->fd) != SP_OK)
        return sp_fail(dev, "no descriptor", err, errlen);
    return 0;
}

int rdt_serial_open(struct rdt_serial **out, const char *dev, uint32_t baud, char *err,
                    size_t errlen)
{
    *out = NULL;
    struct rdt_serial *s = calloc(1, sizeof(*s));
    if (!s)
        return rdt_errf(-ENOMEM, err, errlen, "out of memory");
    /* a first look, to tell a pseudo-terminal from a port; libserialport opens a port itself */
    int rc = 0;
    s->fd = open(dev, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (s->fd < 0)
        rc = rdt_errf(-errno, err, errlen, "com: cannot open %s: %s", dev, strerror(errno));
    else if (!isatty(s->fd))
        rc = rdt_errf(-ENOTTY, err, errlen, "com: %s is not a serial line", dev);
    /* $RDQ_COM_LIBSERIALPORT=1: every device through libserialport, pseudo-terminals too (for
     * test rigs that teach it them) */
    const char *force = getenv("RDQ_COM_LIBSERIALPORT");
    if (rc == 0 && is_pty(s->fd) && !(force && strcmp(force, "1") == 0)) {
        rc = open_pty(s, dev, baud, err, errlen);
    } else if (rc == 0) {
        close(s->fd);
        s->fd = -1;
        rc = open_port(s, dev, baud, err, errlen);
    }
    /* TIOCEXCL outlives its process on a pty whose master stays open: ptys get the flock only */
    if (rc == 0 &&
        (flock(s->fd, LOCK_EX | LOCK_NB) < 0 || (!is_pty(s->fd) && ioctl(s->fd, TIOCEXCL) < 0)))
        rc = rdt_errf(-EBUSY, err, errlen, "com: %s is in use by another program", dev);
    if (rc == 0 && fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK) < 0)
        rc = rdt_errf(-errno, err, errlen, "com: %s: %s", dev, strerror(errno));
    if (rc) {
        rdt_serial_close(s);
        return rc;
    }
    fcntl(s->fd, F_SETFD, FD_CLOEXEC);
    tcflush(s->fd, TCIOFLUSH); /* bytes from before (a socat pair keeps them) are not ours */
    *out = s;
    return 0;
}

int rdt_serial_fd(const struct rdt_serial *s)
{
    return s->fd;
}

void rdt_serial_close(struct rdt_serial *s)
{
    if (!s)
        return;
    if (s->port) {
        sp_close(s->port); /* closes s->fd */
        sp_free_port(s->port);
    } else if (s->fd >= 0) {
        close(s->fd);
    }
    free(s);
}

int rdt_serial_list(rdt_serial_list_cb cb, void *arg, char *err, size_t errlen)
{
    struct sp_port **ports = NULL;
    if (sp_list_ports(&ports) != SP_OK)
        return sp_fail("serial ports", "cannot list them", err, errlen);
    int n = 0;
    for (; ports[n]; n++) {
        enum sp_transport t = sp_get_port_transport(ports[n]);
        const char *kind = t == SP_TRANSPORT_USB         ? "usb"
                           : t == SP_TRANSPORT_BLUETOOTH ? "bluetooth"
                                                         : "native";
        const char *desc = sp_get_port_description(ports[n]);
        cb(sp_get_port_name(ports[n]), kind, desc ? desc : "", arg);
    }
    sp_free_port_list(ports);
    return n;
}
