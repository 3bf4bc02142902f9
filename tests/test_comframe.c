/* The frames of a serial line: round trips, and a decoder that finds them again after bytes
 * garbled, dropped or inserted, whatever pieces the line delivers them in. */
#include "comframe.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define GOT_MAX 64

struct got {
    struct rdt_com_frame f[GOT_MAX];
    uint8_t payload[GOT_MAX][RDT_COM_PAYLOAD_MAX];
    int n;
};

static void keep(const struct rdt_com_frame *f, void *arg)
{
    struct got *g = arg;
    cr_assert_lt(g->n, GOT_MAX);
    g->f[g->n] = *f;
    memcpy(g->payload[g->n], f->payload, f->len);
    g->f[g->n].payload = g->payload[g->n];
    g->n++;
}

static size_t frame(uint8_t *out, uint8_t chan, uint8_t type, uint16_t seq, const char *text)
{
    struct rdt_com_frame f = {chan, type, seq, (uint16_t)strlen(text), (const uint8_t *)text};
    size_t n = rdt_com_encode(&f, out);
    cr_assert_gt(n, 0);
    return n;
}

static void expect_frame(const struct got *g, int i, uint8_t chan, uint16_t seq, const char *text)
{
    cr_assert_gt(g->n, i, "only %d frames", g->n);
    cr_expect_eq(g->f[i].channel, chan);
    cr_expect_eq(g->f[i].seq, seq);
    cr_expect_eq(g->f[i].len, strlen(text));
    cr_expect_eq(memcmp(g->f[i].payload, text, strlen(text)), 0, "frame %d", i);
}

Test(comframe, crcs_are_the_standard_ones)
{
    /* the check values of CRC-8 (poly 0x07) and CRC-16/CCITT-FALSE over "123456789" */
    cr_expect_eq(rdt_crc8((const uint8_t *)"123456789", 9), 0xF4);
    cr_expect_eq(rdt_crc16((const uint8_t *)"123456789", 9), 0x29B1);
}

Test(comframe, round_trip_in_any_pieces)
{
    static uint8_t line[8 * RDT_COM_FRAME_MAX];
    static char big[RDT_COM_PAYLOAD_MAX + 1];
    memset(big, 0xF9, RDT_COM_PAYLOAD_MAX); /* a payload of flags fools nothing */
    size_t n = frame(line, 3, RDT_COM_DATA, 1, "hello");
    n += frame(line + n, 7, RDT_COM_DATA, 65535, big);
    n += frame(line + n, 254, RDT_COM_CLOSE, 2, "");
    for (size_t piece = 1; piece <= n; piece = piece * 3 + 1) {
        struct rdt_com_decoder d;
        static struct got g;
        memset(&g, 0, sizeof(g));
        rdt_com_decoder_init(&d);
        for (size_t off = 0; off < n; off += piece)
            rdt_com_decode(&d, line + off, off + piece < n ? piece : n - off, keep, &g);
        cr_assert_eq(g.n, 3, "pieces of %zu: %d frames", piece, g.n);
        expect_frame(&g, 0, 3, 1, "hello");
        expect_frame(&g, 1, 7, 65535, big);
        expect_frame(&g, 2, 254, 2, "");
        cr_expect_eq(g.f[2].type, RDT_COM_CLOSE);
        cr_expect_eq(d.counts.frames, 3);
        cr_expect_eq(d.counts.skipped + d.counts.bad_header + d.counts.bad_payload, 0);
    }
}

Test(comframe, invalid_frames_are_not_encoded)
{
    uint8_t out[RDT_COM_FRAME_MAX];
    static uint8_t big[RDT_COM_PAYLOAD_MAX + 1];
    struct rdt_com_frame chan = {255, RDT_COM_DATA, 0, 0, NULL};
    struct rdt_com_frame type = {1, 0, 0, 0, NULL};
    struct rdt_com_frame len = {1, RDT_COM_DATA, 0, RDT_COM_PAYLOAD_MAX + 1, big};
    cr_expect_eq(rdt_com_encode(&chan, out), 0);
    cr_expect_eq(rdt_com_encode(&type, out), 0);
    cr_expect_eq(rdt_com_encode(&len, out), 0);
}

/* Two frames with damage between or inside them; the decoder must deliver `want` of them. */
static void damaged(void (*hurt)(uint8_t *line, size_t *n, size_t first_len), int want_frames,
                    const char *why)
{
    uint8_t line[4 * RDT_COM_FRAME_MAX];
    size_t a = frame(line, 3, RDT_COM_DATA, 10, "first frame on channel 3");
    size_t n = a + frame(line + a, 7, RDT_COM_DATA, 20, "second frame on channel 7");
    hurt(line, &n, a);
    struct rdt_com_decoder d;
    struct got g = {.n = 0};
    rdt_com_decoder_init(&d);
    rdt_com_decode(&d, line, n, keep, &g);
    cr_assert_eq(g.n, want_frames, "%s: %d frames", why, g.n);
    expect_frame(&g, want_frames - 1, 7, 20, "second frame on channel 7");
}

static void garble_payload(uint8_t *line, size_t *n, size_t a)
{
    (void)n;
    (void)a;
    line[RDT_COM_HEADER + 4] ^= 0x5A;
}

static void garble_length(uint8_t *line, size_t *n, size_t a)
{
    (void)n;
    (void)a;
    line[6] ^= 0x40; /* the header's CRC catches it before the length is trusted */
}

static void drop_bytes(uint8_t *line, size_t *n, size_t a)
{
    (void)a;
    memmove(line + 12, line + 17, *n - 17);
    *n -= 5;
}

static void insert_noise(uint8_t *line, size_t *n, size_t a)
{
    static const uint8_t noise[] = {RDT_COM_FLAG, 0x03, RDT_COM_FLAG, 0x00, 0x41, RDT_COM_FLAG};
    memmove(line + a + sizeof(noise), line + a, *n - a);
    memcpy(line + a, noise, sizeof(noise));
    *n += sizeof(noise);
}

static void cut_between(uint8_t *line, size_t *n, size_t a)
{
    /* the first frame loses its end: the second one's flag is found inside what the first
     * frame's length claims */
    memmove(line + a - 3, line + a, *n - a);
    *n -= 3;
}

Test(comframe, resynchronises_after_damage)
{
    damaged(garble_payload, 1, "a garbled payload");
    damaged(garble_length, 1, "a garbled length");
    damaged(drop_bytes, 1, "bytes dropped inside a frame");
    damaged(insert_noise, 2, "noise between frames");
    damaged(cut_between, 1, "the end of a frame lost");
}

Test(comframe, counts_what_it_drops)
{
    uint8_t line[2 * RDT_COM_FRAME_MAX];
    size_t n = frame(line, 3, RDT_COM_DATA, 1, "payload");
    line[RDT_COM_HEADER] ^= 1;
    struct rdt_com_decoder d;
    struct got g = {.n = 0};
    rdt_com_decoder_init(&d);
    rdt_com_decode(&d, (const uint8_t *)"junk", 4, keep, &g);
    rdt_com_decode(&d, line, n, keep, &g);
    cr_expect_eq(g.n, 0);
    cr_expect_eq(d.counts.bad_payload, 1);
    cr_expect_geq(d.counts.skipped, 4);
    /* a stream at another baud rate: bytes that never make a frame, counted, never delivered */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        uint8_t b = (uint8_t)rand();
        rdt_com_decode(&d, &b, 1, keep, &g);
    }
    cr_expect_eq(g.n, 0, "random bytes made %d frames", g.n);
    cr_expect_gt(d.counts.skipped, 10000);
}
