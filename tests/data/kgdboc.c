/* A stand-in for a kernel with kgdboc, for test_kdsrv: on the tty TTY it writes console lines
 * every 100 ms until it reads the break-in sequence SEQ; then it becomes the debug stub on the
 * same tty (gdbserver TTY PROGRAM), as KGDB takes over the line.
 * Usage: test_kgdboc TTY SEQ PROGRAM */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int fd = open(argv[1], O_RDWR | O_NOCTTY);
    struct termios t;
    if (fd < 0 || tcgetattr(fd, &t) < 0)
        return 1;
    cfmakeraw(&t);
    tcsetattr(fd, TCSANOW, &t);
    const char *seq = argv[2];
    size_t len = strlen(seq), got = 0;
    for (unsigned n = 0; got < len;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) == 0) {
            dprintf(fd, "[%6u.000000] console line %u (+-) of the kernel\r\n", n, n);
            n++;
            continue;
        }
        char c; /* one byte at a time: what follows the sequence is the stub's */
        if (read(fd, &c, 1) != 1)
            return 1;
        got = c == seq[got] ? got + 1 : c == seq[0] ? 1 : 0;
    }
    dprintf(fd, "KGDB: entering the debugger\r\n");
    close(fd);
    execlp("gdbserver", "gdbserver", argv[1], argv[3], (char *)NULL);
    return 127;
}
