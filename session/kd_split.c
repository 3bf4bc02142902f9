/* A serial line shared by the kernel's console and KGDB (kgdboc): gdb's packets ($...#cs), the
 * acks that answer gdb's own packets, and everything else, console text. From a '$' on, the
 * bytes are held until they prove to be a packet (its checksum checks) or text: a shell prompt
 * ("~$ ") or a price ("$5 #1") reaches the console whole and in its place, and gdb sees only
 * packets. A packet has no '$' inside (the protocol escapes it), so another '$' ends a held run
 * as text; so do KD_PACKET_MAX bytes, and a quiet spell (kd_split_quiet). */
#include "kd_int.h"

#include <stdlib.h>

/* A run of input bytes of one kind, given to `emit` when the kind changes. */
struct run {
    const uint8_t *p;
    size_t start, end;
    bool gdb;
    kd_emit_cb emit;
    void *arg;
};

static void run_flush(struct run *r)
{
    if (r->end > r->start)
        r->emit(r->arg, r->gdb, r->p + r->start, r->end - r->start);
    r->start = r->end;
}

static void run_add(struct run *r, size_t i, bool gdb)
{
    if (gdb != r->gdb || i != r->end) {
        run_flush(r);
        r->start = i;
        r->gdb = gdb;
    }
    r->end = i + 1;
}

/* A byte outside a packet: an ack of gdb's packet, or console text. */
static void text_byte(struct kd_split *s, struct run *r, size_t i)
{
    uint8_t c = r->p[i];
    bool ack = (c == '+' || c == '-') && s->acks;
    s->acks -= ack;
    run_add(r, i, ack);
}

/* What is held goes out: to gdb as a packet, or, read again from its '$' on as text (which
 * may hold acks), to the console. */
static void release(struct kd_split *s, bool gdb, kd_emit_cb emit, void *arg)
{
    struct run r = {.p = s->held, .emit = emit, .arg = arg};
    s->st = SPLIT_TEXT;
    if (gdb && s->hlen) {
        emit(arg, true, s->held, s->hlen);
        s->acks = 0; /* an answer comes after the ack of what it answers */
    }
    for (size_t i = 0; !gdb && i < s->hlen; i++)
        text_byte(s, &r, i);
    run_flush(&r);
    s->hlen = 0;
}

static bool hold(struct kd_split *s, uint8_t c)
{
    if (s->hlen == s->hcap) {
        size_t cap = s->hcap ? s->hcap * 2 : 256;
        uint8_t *p = cap <= 2 * KD_PACKET_MAX ? realloc(s->held, cap) : NULL;
        if (!p)
            return false;
        s->held = p;
        s->hcap = cap;
    }
    s->held[s->hlen++] = c;
    return true;
}

static int hex(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20; /* a stub may write its checksum in capitals */
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One held byte: false when it ended the run as text, to be held no more (the caller then
 * takes it as text itself). */
static bool held_byte(struct kd_split *s, uint8_t c, kd_emit_cb emit, void *arg)
{
    int d;
    switch (s->st) {
    case SPLIT_PACKET:
        if (c == '#')
            s->st = SPLIT_SUM1;
        else
            s->sum += c;
        break;
    case SPLIT_SUM1:
        if ((d = hex(c)) < 0)
            return release(s, false, emit, arg), false;
        s->sum_got = (unsigned)d;
        s->st = SPLIT_SUM2;
        break;
    default:
        if ((d = hex(c)) < 0 || (s->sum_got << 4 | (unsigned)d) != (s->sum & 0xff))
            return release(s, false, emit, arg), false;
        if (!hold(s, c))
            return release(s, false, emit, arg), false;
        release(s, true, emit, arg);
        return true;
    }
    if (s->hlen > KD_PACKET_MAX || !hold(s, c))
        return release(s, false, emit, arg), false;
    return true;
}

static void start(struct kd_split *s)
{
    s->starts++;
    s->st = SPLIT_PACKET;
    s->sum = 0;
    s->hlen = 0;
}

void kd_split_link(struct kd_split *s, const uint8_t *p, size_t n, kd_emit_cb emit, void *arg)
{
    struct run r = {.p = p, .emit = emit, .arg = arg};
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (s->st != SPLIT_TEXT && c != '$') {
            run_flush(&r);
            if (held_byte(s, c, emit, arg)) {
                r.start = r.end = i + 1;
                continue;
            }
            r.start = r.end = i; /* text after all: this byte too */
        }
        if (c == '$') {
            run_flush(&r);
            release(s, false, emit, arg); /* a '$' held before it was text */
            start(s);
            r.start = r.end = i + 1;
            if (!hold(s, c)) { /* no memory for it: text */
                s->st = SPLIT_TEXT;
                run_add(&r, i, false);
            }
        } else {
            text_byte(s, &r, i);
        }
    }
    run_flush(&r);
}

bool kd_split_holding(const struct kd_split *s)
{
    return s->st != SPLIT_TEXT;
}

void kd_split_quiet(struct kd_split *s, kd_emit_cb emit, void *arg)
{
    release(s, false, emit, arg);
}

void kd_split_free(struct kd_split *s)
{
    free(s->held);
    *s = (struct kd_split){0};
}

/* Moves through a packet; true at its last byte. */
static bool packet_step(enum kd_split_state *st, uint8_t c)
{
    switch (*st) {
    case SPLIT_PACKET:
        *st = c == '#' ? SPLIT_SUM1 : SPLIT_PACKET;
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

void kd_scan_gdb(struct kd_scan *g, struct kd_split *s, const uint8_t *p, size_t n, kd_emit_cb emit,
                 void *arg)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (g->st == SPLIT_TEXT && c == 0x03) {
            if (i > start)
                emit(arg, true, p + start, i - start);
            emit(arg, false, p + i, 1);
            start = i + 1;
        } else if (g->st == SPLIT_TEXT) {
            g->st = c == '$' ? SPLIT_PACKET : SPLIT_TEXT;
        } else if (packet_step(&g->st, c)) {
            s->acks++;
        }
    }
    if (n > start)
        emit(arg, true, p + start, n - start);
}
