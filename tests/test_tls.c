/* ssl and spipe end to end through the real programs, with peers that rdq did not write
 * (openssl s_client and s_server), certificates made by the test in both stores, every error a
 * store can give, pinning, clicon, the broker's query endpoint and relays. */
#include "helpers.h"
#include "tls_certs.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct test_broker br;
static char out[65536], want[2048], cmd[2048];

static void setup(void)
{
    memset(&br, 0, sizeof(br));
    cr_assert(tc_make(), "the test certificates could not be made");
    cr_assert_eq(test_broker_start(&br), 0, "the broker did not start");
}

static void teardown(void)
{
    test_broker_stop(&br, SIGTERM);
    cr_expect(test_logs_clean(&br, out, sizeof(out)), "a program reported: %s", out);
    test_broker_cleanup(&br);
    tc_remove();
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 120);

/* Starts rdsrv -t `t` -stub cat (as `uid`), its output in <broker dir>/<name>.log, and waits
 * until it serves. */
static pid_t serve(const char *t, const char *name, uid_t uid)
{
    char log[192], text[4096];
    snprintf(log, sizeof(log), "%s/%s.log", br.dir, name);
    const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", NULL};
    pid_t pid = test_spawn(argv, log, uid);
    cr_assert(test_wait_file(log, "Server started", 5000, text, sizeof(text)), "%s", text);
    return pid;
}

/* `echo PAYLOAD | rdq -premote CLIENT`: the exit status, the output in out. */
static int premote(const char *client, const char *payload)
{
    snprintf(cmd, sizeof(cmd), "echo %s | timeout 20 rdq -premote '%s' -timeout 5000", payload,
             client);
    return test_run(cmd, out, sizeof(out), true);
}

/* An openssl command line against 127.0.0.1:port, its output in out. */
static int s_client(unsigned port, const char *opts)
{
    snprintf(cmd, sizeof(cmd),
             "echo | timeout 10 openssl s_client -connect 127.0.0.1:%u -CAfile %s/ca.pem "
             "-verify_return_error %s",
             port, tc_mach, opts);
    return test_run(cmd, out, sizeof(out), true);
}

/* ---- Peers that rdq did not write ---- */

Test(tls, openssl_s_client_completes_tls12_and_tls13_and_tls11_is_refused)
{
    unsigned p = test_free_ports(2);
    char t[128];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u", p);
    pid_t s = serve(t, "ssl", 0);
    s_client(p, "-tls1_3 -verify_hostname localhost");
    cr_expect(strstr(out, "New, TLSv1.3, Cipher is TLS_AES_"), "%s", out);
    cr_expect(strstr(out, "Verification: OK"), "%s", out);
    s_client(p, "-tls1_2 -verify_hostname localhost");
    cr_expect(strstr(out, "New, TLSv1.2, Cipher is ECDHE-"), "%s", out);
    cr_expect(strstr(out, "Verification: OK"), "%s", out);
    s_client(p, "-tls1_1 -cipher DEFAULT@SECLEVEL=0");
    cr_expect(strstr(out, "Cipher is (NONE)"), "TLS 1.1 was taken: %s", out);
    cr_expect(strstr(out, "alert protocol version"), "%s", out);
    /* proto=tls1.3 takes TLS 1.3 only */
    snprintf(t, sizeof(t), "ssl:proto=tls1.3,certuser=rdq-srv,port=%u", p + 1);
    pid_t s13 = serve(t, "ssl13", 0);
    s_client(p + 1, "-tls1_2");
    cr_expect(strstr(out, "Cipher is (NONE)"), "TLS 1.2 was taken by a tls1.3 server: %s", out);
    s_client(p + 1, "-tls1_3");
    cr_expect(strstr(out, "New, TLSv1.3, Cipher is TLS_AES_"), "%s", out);
    test_stop(s, SIGTERM);
    test_stop(s13, SIGTERM);
}

Test(tls, rdq_client_against_openssl_s_server)
{
    /* s_server plays the rdq server's part from a file: a session-layer hello that wants no
     * password, then a line; what rdq sends after its TLS handshake lands in s_server's output */
    unsigned p = test_free_ports(1);
    char hello[128], got[256];
    snprintf(hello, sizeof(hello), "%s/hello.bin", br.dir);
    FILE *f = fopen(hello, "w");
    cr_assert_not_null(f);
    fwrite("RDQS\0\1\0\41\0", 1, 9, f);
    for (int i = 0; i < 32; i++)
        fputc(i * 7, f);
    fputs("from-s_server\n", f);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "((cat %s; sleep 5) | timeout 10 openssl s_server -quiet -naccept 1 -accept "
             "127.0.0.1:%u -cert %s/srv.pem -key %s/srv.key) > %s/s_server.out 2>&1 &",
             hello, p, tc_user, tc_user, br.dir);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0);
    snprintf(cmd, sizeof(cmd),
             "for i in $(seq 50); do ss -Htln 'sport = :%u' | grep -q . && exit 0; sleep 0.1; "
             "done; exit 1",
             p);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "s_server did not listen");
    char client[256];
    snprintf(client, sizeof(client), "ssl:proto=tls1,certuser=%s,server=127.0.0.1,port=%u",
             tc_srv_thumb, p);
    cr_expect_eq(premote(client, "from-rdq"), 0, "%s", out);
    cr_expect_str_eq(out, "from-s_server\n");
    snprintf(got, sizeof(got), "%s/s_server.out", br.dir);
    cr_expect(test_wait_file(got, "from-rdq", 3000, out, sizeof(out)), "%s", out);
    cr_expect_eq(memcmp(out, "RDQC", 4), 0, "no client hello inside TLS: %s", out);
}

/* ---- What the client checks ---- */

Test(tls, client_pins_by_thumbprint_or_trusts_by_name)
{
    unsigned p = test_free_ports(1);
    char t[128], client[512], upper[64] = "", grouped[80] = "";
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u", p);
    pid_t s = serve(t, "ssl", 0);
    /* by thumbprint, in any case, grouped with colons or spaces */
    for (int i = 0; i < 40; i++) {
        char c = tc_srv_thumb[i];
        size_t n = strlen(upper);
        upper[n] = (char)(c >= 'a' && c <= 'f' ? c - 32 : c);
        if (i % 2 && i < 39)
            upper[n + 1] = ':';
        n = strlen(grouped);
        grouped[n] = c;
        if (i % 4 == 3 && i < 39)
            grouped[n + 1] = ' ';
    }
    const char *thumbs[] = {tc_srv_thumb, upper, grouped};
    for (int i = 0; i < 3; i++) {
        snprintf(client, sizeof(client), "ssl:proto=tls1,certuser=\"%s\",server=127.0.0.1,port=%u",
                 thumbs[i], p);
        cr_expect_eq(premote(client, "pinned"), 0, "%s: %s", thumbs[i], out);
        cr_expect_str_eq(out, "pinned\n", "%s", thumbs[i]);
    }
    /* by name: the certificate's CN, chained to the CA in the machine store */
    snprintf(client, sizeof(client), "ssl:proto=tls1,certuser=rdq-srv,server=127.0.0.1,port=%u", p);
    cr_expect_eq(premote(client, "named"), 0, "%s", out);
    cr_expect_str_eq(out, "named\n");
    /* or its DNS subjectAltName */
    snprintf(client, sizeof(client), "ssl:proto=tls1,machuser=localhost,server=127.0.0.1,port=%u",
             p);
    cr_expect_eq(premote(client, "by-san"), 0, "%s", out);
    cr_expect_str_eq(out, "by-san\n");
    /* a wrong thumbprint: refused, with the thumbprint the server showed */
    snprintf(client, sizeof(client), "ssl:proto=tls1,certuser=%s,server=127.0.0.1,port=%u",
             tc_mach_thumb, p);
    cr_expect_eq(premote(client, "x"), 1, "%s", out);
    snprintf(want, sizeof(want),
             "rdq: tls: refused the server's certificate (SHA-1 thumbprint %s): it is not the "
             "pinned one\n",
             tc_srv_thumb);
    cr_expect_str_eq(out, want);
    /* a name the certificate does not carry */
    snprintf(client, sizeof(client), "ssl:proto=tls1,certuser=rdq-mach,server=127.0.0.1,port=%u",
             p);
    cr_expect_eq(premote(client, "x"), 1, "%s", out);
    cr_expect(strstr(out, "it does not carry the name \"rdq-mach\""), "%s", out);
    /* the right name, but no certificate of the client's stores (nor the system's) to chain to */
    snprintf(cmd, sizeof(cmd),
             "echo x | RDQ_USER_CERTS=%s RDQ_MACHINE_CERTS=%s rdq -premote "
             "ssl:proto=tls1,certuser=rdq-srv,server=127.0.0.1,port=%u",
             tc_empty, tc_empty, p);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, "does not chain to a certificate of your stores or the system's "
                          "(unable to get local issuer certificate)"),
              "%s", out);
    test_stop(s, SIGTERM);
}

Test(tls, a_server_the_client_does_not_trust_is_refused_before_the_session)
{
    /* a self-signed certificate of the same name: the session layer never starts, so a
     * password-protected server sees no proof, and the client no hello */
    unsigned p = test_free_ports(1);
    char t[128], client[256], log[192];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u,password=Pw1234", p);
    setenv("RDQ_USER_CERTS", tc_other, 1);
    pid_t s = serve(t, "impostor", 0);
    setenv("RDQ_USER_CERTS", tc_user, 1);
    snprintf(client, sizeof(client),
             "ssl:proto=tls1,certuser=rdq-srv,server=127.0.0.1,port=%u,password=Pw1234", p);
    cr_expect_eq(premote(client, "x"), 1, "%s", out);
    cr_expect(strstr(out, "rdq: tls: refused the server's certificate (SHA-1 thumbprint "), "%s",
              out);
    snprintf(log, sizeof(log), "%s/impostor.log", br.dir);
    test_wait_file(log, "127.0.0.1:", 2000, out, sizeof(out));
    cr_expect_null(strstr(out, "Error 0x80004005"), "a proof reached the server: %s", out);
    test_stop(s, SIGTERM);
}

Test(tls, a_name_with_a_nul_inside_is_not_the_name)
{
    /* a certificate from a trusted CA whose CN is "rdq-srv", a NUL, then more: not rdq-srv */
    unsigned p = test_free_ports(1);
    char t[160], client[256];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=%s,port=%u", tc_nul_thumb, p);
    setenv("RDQ_USER_CERTS", tc_nul, 1);
    pid_t s = serve(t, "nul", 0);
    setenv("RDQ_USER_CERTS", tc_user, 1);
    snprintf(client, sizeof(client), "ssl:proto=tls1,certuser=rdq-srv,server=127.0.0.1,port=%u", p);
    cr_expect_eq(premote(client, "x"), 1, "%s", out);
    snprintf(want, sizeof(want),
             "rdq: tls: refused the server's certificate (SHA-1 thumbprint %s): it does not carry "
             "the name \"rdq-srv\"\n",
             tc_nul_thumb);
    cr_expect_str_eq(out, want);
    test_stop(s, SIGTERM);
}

Test(tls, plain_and_tls_ends_that_meet_say_so)
{
    unsigned p = test_free_ports(2);
    char t[128], client[256];
    snprintf(t, sizeof(t), "tcp:port=%u", p);
    pid_t plain = serve(t, "plain", 0);
    snprintf(client, sizeof(client), "ssl:proto=tls1,certuser=rdq-srv,server=127.0.0.1,port=%u", p);
    cr_expect_eq(premote(client, "x"), 1, "%s", out);
    cr_expect(strstr(out, "the peer does not speak TLS (a plain tcp or npipe server?)"), "%s", out);
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u", p + 1);
    pid_t tls = serve(t, "tls", 0);
    snprintf(cmd, sizeof(cmd), "rdq -premote tcp:server=127.0.0.1,port=%u -timeout 300", p + 1);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, "(an ssl or spipe server waits so for a TLS client)"), "%s", out);
    test_stop(plain, SIGTERM);
    test_stop(tls, SIGTERM);
}

/* ---- The server's certificate ---- */

Test(tls, server_finds_its_certificate_by_name_or_thumbprint_in_either_store)
{
    unsigned p = test_free_ports(4);
    char t[4][160], client[256];
    snprintf(t[0], sizeof(t[0]), "ssl:proto=tls1,certuser=\"%.4s %.36s\",port=%u", tc_srv_thumb,
             tc_srv_thumb + 4, p);
    snprintf(t[1], sizeof(t[1]), "ssl:proto=tls1,machuser=rdq-mach,port=%u", p + 1);
    snprintf(t[2], sizeof(t[2]), "ssl:proto=tls1,machuser=%s,port=%u", tc_mach_thumb, p + 2);
    snprintf(t[3], sizeof(t[3]), "ssl:proto=tls1,certuser=rdq-onefile,port=%u", p + 3);
    const char *pins[] = {tc_srv_thumb, tc_mach_thumb, "rdq-mach", "rdq-onefile"};
    pid_t s[4];
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof(name), "s%d", i);
        s[i] = serve(t[i], name, 0);
        snprintf(client, sizeof(client), "ssl:proto=tls1,certuser=%s,server=127.0.0.1,port=%u",
                 pins[i], p + i);
        cr_expect_eq(premote(client, "found"), 0, "%s: %s", t[i], out);
        cr_expect_str_eq(out, "found\n", "%s", t[i]);
    }
    for (int i = 0; i < 4; i++)
        test_stop(s[i], SIGTERM);
}

/* rdsrv -t ssl:...,certuser=CERT (as `uid`): exits 1 with a message that has `needle`. */
static void refused(const char *cert, uid_t uid, const char *needle)
{
    snprintf(cmd, sizeof(cmd), "%s timeout 10 rdsrv -t ssl:proto=tls1,certuser=%s,port=%u",
             uid ? "setpriv --reuid=65534 --regid=65534 --clear-groups" : "", cert,
             test_free_ports(1));
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s: %s", cert, out);
    cr_expect(strstr(out, needle), "%s: %s", cert, out);
    cr_expect_null(strstr(out, "Server started"), "%s", out);
}

Test(tls, every_certificate_error_names_the_store_and_the_certificate)
{
    snprintf(want, sizeof(want),
             "ssl: certificate \"rdq-none\" is not in the user store %s (no PEM file there "
             "holds a certificate of that name or thumbprint)",
             tc_user);
    refused("rdq-none", 0, want);
    snprintf(want, sizeof(want),
             "certificate \"rdq-dup\": more than one in the user store %s matches (dup-a.pem "
             "and dup-b.pem): name it by its thumbprint",
             tc_user);
    refused("rdq-dup", 0, want);
    snprintf(want, sizeof(want), "%s/nokey.pem has no private key", tc_user);
    refused("rdq-nokey", 0, want);
    snprintf(want, sizeof(want), "the private key %s/badkey.key does not match certificate",
             tc_user);
    refused("rdq-badkey", 0, want);
    refused("rdq-noauth", 0,
            "is not for server authentication (its extended key usage leaves out serverAuth)");
    refused("rdq-expired", 0, "certificate \"rdq-expired\" (");
    refused("rdq-expired", 0, ") expired on ");
    refused("rdq-future", 0, ") is not valid before ");
    snprintf(want, sizeof(want), "cannot read the private key %s/locked.key: Permission denied",
             tc_user);
    if (geteuid() == 0)
        refused("rdq-locked", 65534, want);
    snprintf(cmd, sizeof(cmd),
             "RDQ_MACHINE_CERTS=%s/nowhere rdsrv -t spipe:proto=tls1,machuser=x,pipe=p", tc_dir);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    snprintf(want, sizeof(want),
             "spipe: certificate \"x\": the machine store %s/nowhere cannot be read: No such "
             "file or directory",
             tc_dir);
    cr_expect(strstr(out, want), "%s", out);
}

/* ---- Everywhere ---- */

Test(tls, spipe_end_to_end_and_through_a_relay)
{
    test_broker_stop(&br, SIGTERM);
    br.extra[0] = "-relay";
    cr_assert_eq(test_broker_start(&br), 0);
    pid_t s = serve("spipe:proto=tls1,certuser=rdq-srv,pipe=sec%d,password=Pw1234", "spipe", 0);
    char log[4096], pipe[64] = "", client[256];
    snprintf(cmd, sizeof(cmd), "%s/spipe.log", br.dir);
    cr_assert(test_wait_file(cmd, "Pipe=", 2000, log, sizeof(log)));
    cr_assert_eq(sscanf(strstr(log, "Pipe="), "Pipe=%63[^,]", pipe), 1, "%s", log);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want),
             "Servers on localhost:\nRemote Process Server - "
             "spipe:Proto=tls1,Certuser=rdq-srv,Pipe=%s,Password=*\n",
             pipe);
    cr_expect_str_eq(out, want);
    snprintf(client, sizeof(client),
             "spipe:proto=tls1,certuser=rdq-srv,server=localhost,pipe=%s,password=Pw1234", pipe);
    cr_expect_eq(premote(client, "local-spipe"), 0, "%s", out);
    cr_expect_str_eq(out, "local-spipe\n");
    /* from "another host": TLS runs end to end through the broker's relay */
    snprintf(client, sizeof(client),
             "spipe:proto=tls1,certuser=%s,server=127.0.0.2,pipe=%s,password=Pw1234", tc_srv_thumb,
             pipe);
    cr_expect_eq(premote(client, "relayed-spipe"), 0, "%s", out);
    cr_expect_str_eq(out, "relayed-spipe\n");
    snprintf(client, sizeof(client),
             "spipe:proto=tls1,certuser=%s,server=127.0.0.2,pipe=%s,password=Pw1234", tc_mach_thumb,
             pipe);
    cr_expect_eq(premote(client, "x"), 1, "%s", out);
    cr_expect(strstr(out, "it is not the pinned one"), "%s", out);
    test_stop(s, SIGTERM);
}

Test(tls, ssl_with_clicon)
{
    unsigned p = test_free_ports(1);
    char t[160];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u,clicon=127.0.0.1", p);
    pid_t s = serve(t, "clicon", 0);
    snprintf(cmd, sizeof(cmd),
             "echo reversed | timeout 20 rdq -premote "
             "ssl:proto=tls1,certuser=%s,clicon=127.0.0.1,port=%u",
             tc_srv_thumb, p);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "reversed\n");
    test_stop(s, SIGTERM);
}

Test(tls, broker_answers_over_ssl_and_lists_tls_servers_without_secrets)
{
    unsigned q = test_free_ports(2), p = q + 1;
    char listen[160];
    snprintf(listen, sizeof(listen), "ssl:proto=tls1,certuser=rdq-srv,port=%u", q);
    test_broker_stop(&br, SIGTERM);
    br.extra[0] = "-listen";
    br.extra[1] = listen;
    cr_assert_eq(test_broker_start(&br), 0);
    char t[160];
    snprintf(t, sizeof(t), "ssl:proto=tls1,machuser=rdq-mach,port=%u,password=Pw1234", p);
    pid_t s = serve(t, "ssl", 0);
    cr_assert(test_wait_rows("localhost", 1, 5000, out, sizeof(out)), "%s", out);
    snprintf(want, sizeof(want),
             "Servers on 127.0.0.1:\nRemote Process Server - "
             "ssl:Proto=tls1,Machuser=rdq-mach,Port=%u,Password=*\n",
             p);
    snprintf(cmd, sizeof(cmd), "rdq -QR 127.0.0.1 -via ssl:proto=tls1,certuser=%s,port=%u",
             tc_srv_thumb, q);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, want);
    cr_expect_null(strstr(out, "Pw1234"));
    cr_expect_null(strstr(out, ".key"));
    /* a wrong pin: no listing */
    snprintf(cmd, sizeof(cmd), "rdq -QR 127.0.0.1 -via ssl:proto=tls1,certuser=%s,port=%u",
             tc_mach_thumb, q);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 1, "%s", out);
    cr_expect(strstr(out, "it is not the pinned one"), "%s", out);
    /* -json's client string reaches the server as it is, once the password is given */
    snprintf(cmd, sizeof(cmd),
             "rdq -QR 127.0.0.1 -json -via ssl:proto=tls1,certuser=rdq-srv,port=%u", q);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    snprintf(want, sizeof(want),
             "\"client\": \"ssl:Proto=tls1,Machuser=rdq-mach,Port=%u,Password=*,Server=127.0.0.1\"",
             p);
    cr_expect(strstr(out, want), "%s", out);
    test_stop(s, SIGTERM);
}

Test(tls, nothing_of_the_session_crosses_in_clear)
{
    /* a relay that records every byte between rdq and an ssl server: neither the session
     * layer's frames nor the payload are in it */
    unsigned p = test_free_ports(1);
    char t[160], client[256];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u,password=Pw1234", p);
    pid_t s = serve(t, "ssl", 0);
    struct test_relay r;
    cr_assert_eq(test_relay_start(&r, p), 0);
    snprintf(client, sizeof(client),
             "ssl:proto=tls1,certuser=%s,server=127.0.0.1,port=%u,password=Pw1234", tc_srv_thumb,
             r.port);
    cr_expect_eq(premote(client, "payload-in-the-clear"), 0, "%s", out);
    cr_expect_str_eq(out, "payload-in-the-clear\n");
    test_relay_join(&r);
    cr_expect_gt(r.len, 200, "the relay saw %zu bytes", r.len);
    cr_expect_null(memmem(r.buf, r.len, "payload", 7), "the payload crossed in clear");
    cr_expect_null(memmem(r.buf, r.len, "RDQ", 3), "a session frame crossed in clear");
    cr_expect_null(memmem(r.buf, r.len, "Pw1234", 6));
    test_stop(s, SIGTERM);
}

Test(tls, ssl_and_spipe_carry_a_flood_both_ways_whole)
{
    /* records read ahead must be delivered without waiting for the descriptor: a stall would
     * hang here (and time out), a lost record would make cmp fail */
    unsigned p = test_free_ports(1);
    char t[160], client[256];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u", p);
    pid_t s = serve(t, "ssl", 0);
    pid_t sp = serve("spipe:proto=tls1,certuser=rdq-srv,pipe=flood", "spipe", 0);
    snprintf(cmd, sizeof(cmd), "head -c 33554433 /dev/urandom > %s/flood && echo x > %s/one",
             br.dir, br.dir);
    cr_assert_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    const char *clients[2];
    char ssl[256], spipe[256];
    snprintf(ssl, sizeof(ssl), "ssl:proto=tls1,certuser=%s,server=127.0.0.1,port=%u", tc_srv_thumb,
             p);
    snprintf(spipe, sizeof(spipe), "spipe:proto=tls1,certuser=%s,server=localhost,pipe=flood",
             tc_srv_thumb);
    clients[0] = ssl;
    clients[1] = spipe;
    for (int i = 0; i < 2; i++) {
        const char *files[] = {"flood", "one"};
        for (int f = 0; f < 2; f++) {
            snprintf(client, sizeof(client), "%s", clients[i]);
            snprintf(cmd, sizeof(cmd), "timeout 60 rdq -premote '%s' < %s/%s | cmp - %s/%s", client,
                     br.dir, files[f], br.dir, files[f]);
            cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s, %s: %s", client, files[f],
                         out);
        }
    }
    /* an exchange that pauses with both ends open, as a debugger's does: every record of the
     * answer arrives while the client still holds its side open (within 2 s, though it waits 3) */
    snprintf(cmd, sizeof(cmd),
             "head -c 200000 %s/flood > %s/some && (cat %s/some; sleep 3) | timeout 2 rdq "
             "-premote '%s' | head -c 200000 | cmp - %s/some",
             br.dir, br.dir, br.dir, ssl, br.dir);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "records held back: %s", out);
    test_stop(s, SIGTERM);
    test_stop(sp, SIGTERM);
}

Test(tls, a_pinned_thumbprint_never_loads_the_system_trust_store)
{
    /* the system's store costs tens of milliseconds: a thumbprint needs none, a name does */
    unsigned p = test_free_ports(1);
    char t[128], trace[65536];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u", p);
    pid_t s = serve(t, "ssl", 0);
    const char *pins[] = {tc_srv_thumb, "rdq-srv"};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd),
                 "echo x | ASAN_OPTIONS=detect_leaks=0 strace -f -qq -e trace=open,openat -o "
                 "%s/trace rdq -premote ssl:proto=tls1,certuser=%s,server=127.0.0.1,port=%u",
                 br.dir, pins[i], p);
        cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s: %s", pins[i], out);
        snprintf(cmd, sizeof(cmd), "cat %s/trace", br.dir);
        test_run(cmd, trace, sizeof(trace), true);
        bool loaded = strstr(trace, "/usr/lib/ssl/cert.pem") || strstr(trace, "ca-certificates");
        cr_expect_eq(loaded, i == 1, "%s: the system store %s loaded: %s", pins[i],
                     loaded ? "was" : "was not", trace);
    }
    test_stop(s, SIGTERM);
}

Test(tls, a_stub_that_writes_before_it_reads_is_read_while_rdq_writes)
{
    /* both ways full at once: rdq's writes wait on the stub, which waits for rdq to read */
    unsigned p = test_free_ports(1);
    char t[160];
    snprintf(t, sizeof(t), "ssl:proto=tls1,certuser=rdq-srv,port=%u", p);
    char log[192], text[4096];
    snprintf(log, sizeof(log), "%s/both.log", br.dir);
    const char *argv[] = {
        "rdsrv", "-t", t, "-stub", "sh -c 'head -c 40000000 /dev/zero; cat >/dev/null'", NULL};
    pid_t s = test_spawn(argv, log, 0);
    cr_assert(test_wait_file(log, "Server started", 5000, text, sizeof(text)), "%s", text);
    snprintf(cmd, sizeof(cmd),
             "head -c 40000000 /dev/zero | timeout 30 rdq -premote "
             "ssl:proto=tls1,certuser=%s,server=127.0.0.1,port=%u | wc -c",
             tc_srv_thumb, p);
    cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
    cr_expect_str_eq(out, "40000000\n");
    test_stop(s, SIGTERM);
}

Test(tls, no_program_links_openssl)
{
    const char *progs[] = {"rdq", "rdbroker", "rdsrv"};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof(cmd), "readelf -d \"$(command -v %s)\"", progs[i]);
        cr_expect_eq(test_run(cmd, out, sizeof(out), true), 0, "%s", out);
        cr_expect(strstr(out, "(NEEDED)"), "%s: %s", progs[i], out);
        cr_expect_null(strstr(out, "libssl"), "%s links libssl: %s", progs[i], out);
        cr_expect_null(strstr(out, "libcrypto"), "%s links libcrypto: %s", progs[i], out);
        cr_expect_null(strstr(out, "libldns"), "%s links libldns: %s", progs[i], out);
    }
}
