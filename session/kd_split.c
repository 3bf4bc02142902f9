/* A serial line shared by the kernel's console and KGDB (kgdboc): gdb's packets ($...#cs), the
 * acks that answer gdb's own packets, and everything else, console text. As agent-proxy does,
 * byte by byte, bounded: a '$' in console text that never meets its '#' is given back to the
 * console after KD_PACKET_MAX bytes. */
#include "kd_int.h"

/* Moves through a packet; true at its last byte. */
static bool packet_step(enum kd_split_state *st, size_t *plen, uint8_t c)
{
    switch (*st) {
    case SPLIT_PACKET:
        *st = c == '#' ? SPLIT_SUM1 : c == '}' ? SPLIT_ESCAPE : SPLIT_PACKET;
        (*plen)++;
        break;
    case SPLIT_ESCAPE:
        *st = SPLIT_PACKET;
        (*plen)++;
        break;
    case SPLIT_SUM1:
        *st = SPLIT_SUM2;
        break;
    default:
        *st = SPLIT_TEXT;
        return true;
    }
    return false;
}

/* Whether a byte from the target is gdb's. */
static bool link_byte(struct kd_split *s, uint8_t c)
{
    if (s->st != SPLIT_TEXT) {
        packet_step(&s->st, &s->plen, c);
        if (s->plen > KD_PACKET_MAX) {
            s->st = SPLIT_TEXT; /* no packet after all */
            return false;
        }
        return true;
    }
    if (c == '$') {
        s->st = SPLIT_PACKET;
        s->plen = 0;
        s->acks = 0; /* an answer comes after the ack of what it answers */
        return true;
    }
    if ((c == '+' || c == '-') && s->acks) {
        s->acks--;
        return true;
    }
    return false;
}

void kd_split_link(struct kd_split *s, const uint8_t *p, size_t n, kd_emit_cb emit, void *arg)
{
    size_t start = 0;
    bool run_gdb = false;
    for (size_t i = 0; i < n; i++) {
        bool gdb = link_byte(s, p[i]);
        if (i > start && gdb != run_gdb) {
            emit(arg, run_gdb, p + start, i - start);
            start = i;
        }
        run_gdb = gdb;
    }
    if (n > start)
        emit(arg, run_gdb, p + start, n - start);
}

void kd_scan_gdb(struct kd_scan *g, struct kd_split *s, const uint8_t *p, size_t n, kd_emit_cb emit,
                 void *arg)
{
    size_t start = 0, plen = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (g->st == SPLIT_TEXT && c == 0x03) {
            if (i > start)
                emit(arg, true, p + start, i - start);
            emit(arg, false, p + i, 1);
            start = i + 1;
        } else if (g->st == SPLIT_TEXT) {
            g->st = c == '$' ? SPLIT_PACKET : SPLIT_TEXT;
        } else if (packet_step(&g->st, &plen, c)) {
            s->acks++;
        }
    }
    if (n > start)
        emit(arg, true, p + start, n - start);
}
