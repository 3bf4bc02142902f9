/* A serial cable for tests (see ptyline.h). */
#include "ptyline.h"

#include "comframe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static int pair(int *master, int *slave, char *name, size_t len)
{
    struct termios raw;
    memset(&raw, 0, sizeof(raw));
    cfmakeraw(&raw);
    char path[64];
    if (openpty(master, slave, path, &raw, NULL) < 0)
        return -errno;
    snprintf(name, len, "%s", path);
    fcntl(*master, F_SETFL, O_NONBLOCK);
    fcntl(*master, F_SETFD, FD_CLOEXEC);
    fcntl(*slave, F_SETFD, FD_CLOEXEC);
    return 0;
}

/* Spoils the header of each copy of the frame to lose that `buf` holds whole, until enough are
 * lost. */
static void lose_frames(struct ptyline *l, unsigned char *buf, ssize_t n)
{
    for (ssize_t i = 0; l->lost < l->lose_copies && i + RDT_COM_HEADER <= n; i++) {
        const unsigned char *h = buf + i;
        if (h[0] == RDT_COM_FLAG && h[1] == l->lose_chan && h[2] == RDT_COM_DATA &&
            (unsigned)(h[3] << 8 | h[4]) == l->lose_seq &&
            rdt_crc8(h + 1, 6) == h[RDT_COM_HEADER - 1]) {
            buf[i + RDT_COM_HEADER - 1] ^= 0x55;
            l->lost++;
        }
    }
}

/* Copies what one master reads to the other; from A to B with the damage asked for. */
static void pass(struct ptyline *l, int from, int to, bool damage, size_t *seen)
{
    unsigned char buf[4096], out[4096];
    ssize_t n = read(from, buf, sizeof(buf));
    size_t k = 0;
    if (l->cut)
        return; /* read and lost */
    if (damage != l->lose_from_b)
        lose_frames(l, buf, n);
    for (ssize_t i = 0; i < n; i++, (*seen)++) {
        bool hurt = damage && *seen >= l->damage_after;
        size_t at = *seen - l->damage_after;
        if (hurt && l->drop_every && at % l->drop_every < l->drop_len) {
            l->dropped++;
            continue;
        }
        out[k] = buf[i];
        if (hurt && l->garble_every && at % l->garble_every == l->garble_every / 2) {
            out[k] ^= 0x55;
            l->garbled++;
        }
        k++;
    }
    for (size_t off = 0; off < k;) {
        ssize_t w = write(to, out + off, k - off);
        if (w > 0)
            off += (size_t)w;
        else if (errno == EAGAIN)
            poll(&(struct pollfd){.fd = to, .events = POLLOUT}, 1, 100);
        else
            return;
    }
}

static void *run(void *arg)
{
    struct ptyline *l = arg;
    size_t seen_ab = 0, seen_ba = 0;
    for (;;) {
        struct pollfd p[3] = {{.fd = l->ma, .events = POLLIN},
                              {.fd = l->mb, .events = POLLIN},
                              {.fd = l->stop[0], .events = POLLIN}};
        if (poll(p, 3, -1) < 0 && errno != EINTR)
            break;
        if (p[2].revents)
            break;
        if (p[0].revents & POLLIN)
            pass(l, l->ma, l->mb, true, &seen_ab);
        if (p[1].revents & POLLIN)
            pass(l, l->mb, l->ma, false, &seen_ba);
    }
    return NULL;
}

int ptyline_start(struct ptyline *l)
{
    int rc = pair(&l->ma, &l->sa, l->a, sizeof(l->a));
    if (rc == 0)
        rc = pair(&l->mb, &l->sb, l->b, sizeof(l->b));
    if (rc == 0 && pipe(l->stop) < 0)
        rc = -errno;
    if (rc == 0 && pthread_create(&l->thread, NULL, run, l) != 0)
        rc = -EAGAIN;
    return rc;
}

void ptyline_stop(struct ptyline *l)
{
    if (write(l->stop[1], "x", 1) == 1)
        pthread_join(l->thread, NULL);
    close(l->stop[0]);
    close(l->stop[1]);
    close(l->ma);
    close(l->mb);
    close(l->sa);
    close(l->sb);
}
