/* A serial cable for tests: two pseudo-terminal pairs whose masters a thread joins, so that what
 * one slave's user writes the other slave's user reads, as on a null-modem cable. The thread
 * can garble or drop bytes on the way, as a bad line does. */
#ifndef RDQ_TEST_PTYLINE_H
#define RDQ_TEST_PTYLINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct ptyline {
    char a[64], b[64];  /* the two ends: /dev/pts/N */
    int ma, mb, sa, sb; /* masters, and slaves held open (so that a master never hangs up) */
    pthread_t thread;
    int stop[2];
    /* damage, from A to B: flip one byte every `garble_every` bytes, drop `drop_len` bytes
     * every `drop_every` bytes (0: none), after the first `damage_after` bytes */
    size_t garble_every, drop_every, drop_len, damage_after;
    /* and a burst of noise that takes one frame each time it is sent: DATA `lose_seq` of
     * channel `lose_chan`, its first `lose_copies` times (its header spoilt); from B to A
     * instead when `lose_from_b` */
    unsigned lose_chan, lose_seq, lose_copies;
    bool lose_from_b;
    size_t garbled, dropped, lost; /* what it did */
    volatile int cut;              /* while set, nothing crosses either way (the cable is pulled) */
};

/* Makes the cable and starts its thread; 0 or -errno. */
int ptyline_start(struct ptyline *l);
void ptyline_stop(struct ptyline *l);

#endif
