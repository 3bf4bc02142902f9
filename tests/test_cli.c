/* rdq -check through the real program: every form of the reference, errors and exit codes. */
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char out[8192];

static int check(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "rdq -check %s", args);
    return test_run(cmd, out, sizeof(out), true);
}

struct form {
    const char *in;
    const char *canon;
    const char *side;
};

/* Every server-side and client-side form of REFERENCE.md, with optional items. */
static const struct form forms[] = {
    {"npipe:pipe=Name,hidden,password=Pw1,IcfEnable", "npipe:Pipe=Name,Hidden,Password=*,IcfEnable",
     "server"},
    {"tcp:port=51:60,hidden,password=Pw1,ipversion=6,IcfEnable",
     "tcp:Port=51:60,Hidden,Password=*,Ipversion=6,IcfEnable", "server"},
    {"tcp:port=5005,clicon=box17,password=Pw1,ipversion=6",
     "tcp:Port=5005,Password=*,Ipversion=6,Clicon=box17", "server or client"},
    {"com:port=COM2,baud=115200,channel=3,hidden,password=Pw1",
     "com:Port=COM2,Baud=115200,Channel=3,Hidden,Password=*", "server"},
    {"spipe:proto=tls1,certuser=NAME,pipe=Name,hidden,password=Pw1",
     "spipe:Proto=tls1,Certuser=NAME,Pipe=Name,Hidden,Password=*", "server"},
    {"ssl:proto=tls1,machuser=NAME,port=51:60,hidden,password=Pw1",
     "ssl:Proto=tls1,Machuser=NAME,Port=51:60,Hidden,Password=*", "server"},
    {"ssl:proto=tls1,certuser=NAME,port=5005,clicon=box17,password=Pw1",
     "ssl:Proto=tls1,Certuser=NAME,Port=5005,Password=*,Clicon=box17", "server or client"},
    {"npipe:server=box17,pipe=Name,password=Pw1", "npipe:Pipe=Name,Password=*,Server=box17",
     "client"},
    {"tcp:server=box17,port=5005,password=Pw1,ipversion=6",
     "tcp:Port=5005,Password=*,Ipversion=6,Server=box17", "client"},
    {"tcp:clicon=box17,port=51:60,password=Pw1", "tcp:Port=51:60,Password=*,Clicon=box17",
     "client"},
    {"com:port=2,baud=9600,channel=0", "com:Port=COM2,Baud=9600,Channel=0", "server or client"},
    {"spipe:proto=tls1,certuser=NAME,server=box17,pipe=Name,password=Pw1",
     "spipe:Proto=tls1,Certuser=NAME,Pipe=Name,Password=*,Server=box17", "client"},
    {"ssl:proto=tls1,certuser=NAME,server=box17,port=5005",
     "ssl:Proto=tls1,Certuser=NAME,Port=5005,Server=box17", "client"},
    {"ssl:proto=tls1,machuser=NAME,clicon=box17,port=5005",
     "ssl:Proto=tls1,Machuser=NAME,Port=5005,Clicon=box17", "server or client"},
    {"'TCP:Password=Pw1,Port=51:60'", "tcp:Port=51:60,Password=*", "server"},
};

Test(check, every_form_of_the_reference)
{
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        int rc = check(forms[i].in);
        char want[512];
        snprintf(want, sizeof(want), "%s\nside: %s\n", forms[i].canon, forms[i].side);
        cr_expect_eq(rc, 0, "%s: exit %d: %s", forms[i].in, rc, out);
        cr_expect(strncmp(out, want, strlen(want)) == 0, "%s:\n got: %s\nwant: %s", forms[i].in,
                  out, want);
        cr_expect_null(strstr(out, "Pw1"), "%s: the password was printed", forms[i].in);
    }
}

Test(check, server_string_shows_listing_and_client_string)
{
    char host[256] = "", want[1024];
    gethostname(host, sizeof(host));
    cr_expect_eq(check("tcp:port=51:60,password=abc"), 0);
    snprintf(want, sizeof(want),
             "tcp:Port=51:60,Password=*\nside: server\nlisted as: tcp:Port=51:60,Password=*\n"
             "client string: tcp:Port=51:60,Password=*,Server=%s\n",
             host);
    cr_expect_str_eq(out, want);
    cr_expect_eq(check("npipe:pipe=dbg%d,hidden"), 0);
    cr_expect(strstr(out, "listed as: (never listed: hidden)\n"), "%s", out);
    cr_expect_eq(check("tcp:port=5005,clicon=box17"), 0);
    cr_expect(strstr(out, "listed as: (never listed: clicon)\n"), "%s", out);
}

Test(check, the_client_string_is_accepted_as_it_is)
{
    cr_assert_eq(check("-server tcp:port=51:60,password=abc"), 0);
    const char *cs = strstr(out, "client string: ");
    cr_assert_not_null(cs);
    char s[512], arg[600];
    snprintf(s, sizeof(s), "%s", cs + strlen("client string: "));
    s[strcspn(s, "\n")] = '\0';
    snprintf(arg, sizeof(arg), "'%s'", s);
    cr_expect_eq(check(arg), 0, "%s", out);
    cr_expect(strstr(out, "side: client\n"), "%s", out);
}

struct bad {
    const char *in;
    const char *msg;
};

static const struct bad bads[] = {
    {"ssl:proto=ssl3,certuser=x,port=1", "rdq: ssl3 is obsolete and insecure: use proto=tls1\n"},
    {"tcp:port=5005,clicon=box,hidden", "rdq: clicon servers cannot be hidden\n"},
    {"tcp:port=5005,password=waytoolongpassword", "rdq: password: at most 12 letters or digits\n"},
    {"com:port=COM2,baud=9600,channel=255", "rdq: channel: 0 to 254\n"},
    {"udp:port=1", "rdq: unknown protocol \"udp\": use npipe, tcp, com, spipe or ssl\n"},
    {"-server tcp:server=box,port=1", "rdq: server= is for clients: a server string names no "
                                      "server\n"},
    {"-client tcp:port=1", "rdq: tcp needs server=Host or clicon=Host\n"},
};

Test(check, bad_strings_exit_2_with_the_reason)
{
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        cr_expect_eq(check(bads[i].in), 2, "%s", bads[i].in);
        cr_expect_str_eq(out, bads[i].msg, "%s", bads[i].in);
    }
}

Test(check, usage)
{
    cr_expect_eq(test_run("rdq '-?'", out, sizeof(out), true), 0);
    cr_expect(strstr(out, "rdq -check [-server|-client] TRANSPORT"), "%s", out);
    cr_expect(strstr(out, "Debugging Tools for Windows (cdb -QR, dbgsrv, kdsrv)"), "%s", out);
    cr_expect_eq(test_run("rdq --help", out, sizeof(out), true), 0);
    cr_expect_eq(test_run("rdq", out, sizeof(out), true), 2);
    cr_expect(strstr(out, "Usage:"), "%s", out);
    cr_expect_eq(test_run("rdq -frobnicate", out, sizeof(out), true), 2);
    cr_expect_str_eq(out, "rdq: unknown option \"-frobnicate\": try rdq -? for the list\n");
    cr_expect_eq(test_run("rdq -check", out, sizeof(out), true), 2);
    cr_expect_eq(test_run("rdq -check a b", out, sizeof(out), true), 2);
}

Test(ports, lists_what_libserialport_finds)
{
    /* every line a port: name, kind, description, tab-separated; none at all is said so */
    int rc = test_run("rdq -ports", out, sizeof(out), false);
    cr_expect_eq(rc, 0, "%s", out);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char name[128], kind[32];
        cr_expect_eq(sscanf(line, "%127[^\t]\t%31[^\t]\t", name, kind), 2, "%s", line);
        cr_expect_eq(strncmp(name, "/dev/", 5), 0, "%s", line);
        cr_expect(strcmp(kind, "native") == 0 || strcmp(kind, "usb") == 0 ||
                      strcmp(kind, "bluetooth") == 0,
                  "%s", line);
    }
    cr_expect_eq(test_run("rdq -ports extra", out, sizeof(out), true), 2, "%s", out);
    cr_expect_str_eq(out, "rdq: -ports takes no arguments\n");
}
