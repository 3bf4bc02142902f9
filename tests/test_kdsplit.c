/* rdkdsrv's splitter of a line shared by the kernel console and KGDB: packets to gdb whole and
 * only once their checksum checks, everything else to the console, in order, whole, however
 * the bytes arrive. */
#include "kd_int.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

struct sink {
    char gdb[4096], console[4096];
    size_t ng, nc;
    int packets; /* runs given to gdb */
};

static void emit(void *arg, bool gdb, const uint8_t *p, size_t n)
{
    struct sink *k = arg;
    char *to = gdb ? k->gdb : k->console;
    size_t *at = gdb ? &k->ng : &k->nc;
    cr_assert_lt(*at + n, sizeof(k->gdb));
    memcpy(to + *at, p, n);
    *at += n;
    to[*at] = '\0';
    k->packets += gdb;
}

static struct kd_split s;
static struct sink k;

static void setup(void)
{
    memset(&s, 0, sizeof(s));
    memset(&k, 0, sizeof(k));
}

static void teardown(void)
{
    kd_split_free(&s);
}

TestSuite(kdsplit, .init = setup, .fini = teardown);

/* The bytes of `text` as the line delivers them, `chunk` at a time. */
static void line(const char *text, size_t chunk)
{
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i += chunk)
        kd_split_link(&s, (const uint8_t *)text + i, n - i < chunk ? n - i : chunk, emit, &k);
}

Test(kdsplit, a_packet_goes_to_gdb_and_text_to_the_console)
{
    for (size_t chunk = 1; chunk <= 64; chunk *= 4) {
        setup();
        line("[ 1.0] boot\r\n$OK#9a[ 2.0] more\r\n", chunk);
        cr_expect_str_eq(k.gdb, "$OK#9a", "chunk %zu", chunk);
        cr_expect_str_eq(k.console, "[ 1.0] boot\r\n[ 2.0] more\r\n", "chunk %zu", chunk);
        cr_expect_eq(k.packets, 1, "a packet given to gdb in pieces (chunk %zu)", chunk);
        teardown();
    }
}

Test(kdsplit, a_dollar_in_console_text_stays_on_the_console)
{
    line("it costs $5, #1 of them\r\n", 3);
    line("cost $5 #12 in all\r\n", 100); /* a checksum that does not check */
    line("cost $1.50 and then $OK#9a", 7);
    cr_expect_str_eq(k.console,
                     "it costs $5, #1 of them\r\ncost $5 #12 in all\r\ncost $1.50 and then ");
    cr_expect_str_eq(k.gdb, "$OK#9a");
}

Test(kdsplit, a_prompt_is_given_back_after_a_quiet_spell)
{
    line("login: root\r\nroot@target:~$ ", 5);
    cr_expect_str_eq(k.console, "login: root\r\nroot@target:~");
    cr_expect(kd_split_holding(&s));
    kd_split_quiet(&s, emit, &k);
    cr_expect_str_eq(k.console, "login: root\r\nroot@target:~$ ");
    cr_expect(!kd_split_holding(&s));
    cr_expect_str_eq(k.gdb, "");
    line("ls\r\n$S05#b8", 2);
    cr_expect_str_eq(k.gdb, "$S05#b8");
    cr_expect_str_eq(k.console, "login: root\r\nroot@target:~$ ls\r\n");
}

Test(kdsplit, a_checksum_in_capitals_checks)
{
    line("$S05#B8", 3);
    cr_expect_str_eq(k.gdb, "$S05#B8");
    cr_expect_str_eq(k.console, "");
}

Test(kdsplit, escaped_bytes_count_in_the_checksum)
{
    /* "}\x03" is '#' escaped; the sum covers the escape as sent */
    unsigned sum = 'X' + '}' + 0x03 + 'a';
    char pkt[32];
    snprintf(pkt, sizeof(pkt),
             "$X}\x03"
             "a#%02x",
             sum & 0xff);
    line(pkt, 1);
    cr_expect_str_eq(k.gdb, pkt);
    cr_expect_str_eq(k.console, "");
}

Test(kdsplit, acks_of_gdbs_packets_go_to_gdb_and_other_pluses_to_the_console)
{
    struct kd_scan g = {0};
    line("a +1 b\r\n", 4);
    kd_scan_gdb(&g, &s, (const uint8_t *)"$g#67", 5, emit, &k); /* gdb's own: to the sink too */
    cr_expect_str_eq(k.gdb, "$g#67");
    line("+$00#60(+-)", 1);
    cr_expect_str_eq(k.gdb, "$g#67+$00#60");
    cr_expect_str_eq(k.console, "a +1 b\r\n(+-)");
}

Test(kdsplit, an_ack_after_a_dollar_of_text_still_reaches_gdb)
{
    struct kd_scan g = {0};
    line("it costs $5\r\n", 4);
    kd_scan_gdb(&g, &s, (const uint8_t *)"$g#67", 5, emit, &k);
    line("+", 1); /* held behind the '$' of the text */
    cr_expect_str_eq(k.gdb, "$g#67");
    line("$00#60", 2);
    cr_expect_str_eq(k.gdb, "$g#67+$00#60");
    cr_expect_str_eq(k.console, "it costs $5\r\n");
    kd_scan_gdb(&g, &s, (const uint8_t *)"$c#63", 5, emit, &k);
    line("costs $6 ", 3); /* and one given back after a quiet spell */
    line("+", 1);
    kd_split_quiet(&s, emit, &k);
    cr_expect_str_eq(k.gdb, "$g#67+$00#60$c#63+");
    cr_expect_str_eq(k.console, "it costs $5\r\ncosts $6 ");
}

struct count {
    size_t console, gdb;
};

static void emit_count(void *arg, bool gdb, const uint8_t *p, size_t n)
{
    (void)p;
    struct count *c = arg;
    *(gdb ? &c->gdb : &c->console) += n;
}

Test(kdsplit, an_unended_packet_is_text_after_its_limit)
{
    static uint8_t big[KD_PACKET_MAX + 4096];
    memset(big, 'a', sizeof(big));
    big[0] = '$';
    struct count count = {0};
    for (size_t i = 0; i < sizeof(big); i += 4096)
        kd_split_link(&s, big + i, 4096, emit_count, &count);
    cr_expect_eq(count.console, sizeof(big), "%zu of %zu bytes reached the console", count.console,
                 sizeof(big));
    cr_expect_eq(count.gdb, 0);
    cr_expect(!kd_split_holding(&s));
}

/* gdbserver's run-length encoding: '*' and a count, which may be '}', even just before '#'. */
Test(kdsplit, a_run_length_count_of_brace_is_no_escape)
{
    static char pkt[40000];
    size_t n = 0;
    unsigned sum = 0;
    pkt[n++] = '$';
    for (int i = 1; i <= 3000; i++) /* the last, a count just before the '#' */
        for (const char *q = i % 3 ? "7f454c46" : "0*}"; *q; q++)
            sum += (unsigned char)(pkt[n++] = *q);
    n += (size_t)sprintf(pkt + n, "#%02x", sum & 0xff);
    struct count count = {0};
    for (size_t i = 0; i < n; i += 4095)
        kd_split_link(&s, (const uint8_t *)pkt + i, n - i < 4095 ? n - i : 4095, emit_count,
                      &count);
    cr_expect_eq(count.gdb, n, "%zu of %zu bytes reached gdb", count.gdb, n);
    cr_expect_eq(count.console, 0);
}
