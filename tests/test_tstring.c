/* Tests of transport strings: parse, validate, format, pipe-name expansion. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "transport.h"

#define E RDT_EITHER
#define S RDT_SERVER
#define C RDT_CLIENT

/* Long values built from pieces, for the length limits. */
#define S10 "abcdefghij"
#define S50 S10 S10 S10 S10 S10
#define S200 S50 S50 S50 S50
#define S1000 S200 S200 S200 S200 S200

struct valid_row {
    const char *in;
    enum rdt_side asked;
    const char *canon;
    enum rdt_side side;
};

struct invalid_row {
    const char *in;
    enum rdt_side asked;
    const char *err;
};

static const struct valid_row valid[] = {
    /* npipe, server side */
    {"npipe:pipe=MainPipe", E, "npipe:Pipe=MainPipe", S},
    {"npipe:pipe=dbg%d,hidden", E, "npipe:Pipe=dbg%d,Hidden", S},
    {"npipe:pipe=tiger,password=Secret12", E, "npipe:Pipe=tiger,Password=*", S},
    {"npipe:IcfEnable,pipe=p%x_%04X,hidden,password=a1", E,
     "npipe:Pipe=p%x_%04X,Hidden,Password=*,IcfEnable", S},
    {"NPIPE:PiPe=Abc,HIDDEN,icfenable", S, "npipe:Pipe=Abc,Hidden,IcfEnable", S},
    {"npipe:pipe=100%%done", E, "npipe:Pipe=100%%done", S},
    {"npipe:pipe=" S50 S10 S10 S10, E, "npipe:Pipe=" S50 S10 S10 S10, S},
    {"npipe:pipe=a\\b=c:d", E, "npipe:Pipe=a\\b=c:d", S},
    /* npipe, client side */
    {"npipe:server=box17,pipe=MainPipe", E, "npipe:Pipe=MainPipe,Server=box17", C},
    {"npipe:server=\\\\BOX17,pipe=MainPipe,password=*", C,
     "npipe:Pipe=MainPipe,Password=*,Server=BOX17", C},
    {"npipe:pipe=a%%b,server=h", C, "npipe:Pipe=a%%b,Server=h", C},
    /* tcp, server side */
    {"tcp:port=5005", E, "tcp:Port=5005", S},
    {"tcp:port=5005", S, "tcp:Port=5005", S},
    {"  tcp:port=5005 \t", E, "tcp:Port=5005", S},
    {"tcp:port=51:60,password=abc", E, "tcp:Port=51:60,Password=*", S},
    {"tcp:port=0001", E, "tcp:Port=1", S},
    {"tcp:port=65535:65535", E, "tcp:Port=65535", S},
    {"tcp:port=\"5005\"", E, "tcp:Port=5005", S},
    {"tcp:port=5005,password=ABCDEFabcdef", E, "tcp:Port=5005,Password=*", S},
    {"tcp:IcfEnable,ipversion=6,password=Pw,hidden,port=5005", E,
     "tcp:Port=5005,Hidden,Password=*,Ipversion=6,IcfEnable", S},
    /* tcp, reverse connection */
    {"tcp:port=5005,clicon=client1", E, "tcp:Port=5005,Clicon=client1", E},
    {"tcp:port=5005,clicon=client1", S, "tcp:Port=5005,Clicon=client1", S},
    {"tcp:port=5005,clicon=client1,password=x,ipversion=6", S,
     "tcp:Port=5005,Password=*,Ipversion=6,Clicon=client1", S},
    {"tcp:clicon=client1,port=5005,password=*", E, "tcp:Port=5005,Password=*,Clicon=client1", C},
    {"tcp:clicon=\\\\client1,port=51:60", E, "tcp:Port=51:60,Clicon=client1", C},
    {"tcp:clicon=client1,port=51:60,ipversion=6", C, "tcp:Port=51:60,Ipversion=6,Clicon=client1",
     C},
    /* tcp, client side */
    {"tcp:server=box17,port=5005", E, "tcp:Port=5005,Server=box17", C},
    {"tcp:Server=box17,Port=53:60,Password=*", C, "tcp:Port=53:60,Password=*,Server=box17", C},
    {"tcp:server=[fe80::1%eth0],port=5005,ipversion=6", E,
     "tcp:Port=5005,Ipversion=6,Server=fe80::1%eth0", C},
    {"tcp:server=::1,port=1", E, "tcp:Port=1,Server=::1", C},
    {"TCP:PORT=5005,SERVER=My-host_1.example.com", E, "tcp:Port=5005,Server=My-host_1.example.com",
     C},
    {"tcp:server=\"10.0.0.1\",port=5005,password=abc", C,
     "tcp:Port=5005,Password=*,Server=10.0.0.1", C},
    /* com: either side unless hidden */
    {"com:port=COM2,baud=115200,channel=3", E, "com:Port=COM2,Baud=115200,Channel=3", E},
    {"com:port=COM2,baud=115200,channel=3", S, "com:Port=COM2,Baud=115200,Channel=3", S},
    {"com:port=COM2,baud=115200,channel=3", C, "com:Port=COM2,Baud=115200,Channel=3", C},
    {"com:port=2,baud=9600,channel=0", E, "com:Port=COM2,Baud=9600,Channel=0", E},
    {"com:channel=254,baud=9600,port=com1,hidden,password=abc", E,
     "com:Port=COM1,Baud=9600,Channel=254,Hidden,Password=*", S},
    {"com:port=/dev/ttyUSB0,baud=4000000,channel=1", E,
     "com:Port=/dev/ttyUSB0,Baud=4000000,Channel=1", E},
    {"com:port=/dev/pts/3,baud=1,channel=7,password=*", E,
     "com:Port=/dev/pts/3,Baud=1,Channel=7,Password=*", C},
    {"com:port=Com10,baud=57600,channel=2,password=pw", E,
     "com:Port=COM10,Baud=57600,Channel=2,Password=*", E},
    /* spipe */
    {"spipe:proto=tls1,certuser=NAME,pipe=secure", E, "spipe:Proto=tls1,Certuser=NAME,Pipe=secure",
     S},
    {"spipe:pipe=s%d,hidden,password=pw,machuser=host.example,proto=TLS1.3", E,
     "spipe:Proto=tls1.3,Machuser=host.example,Pipe=s%d,Hidden,Password=*", S},
    {"spipe:proto=tls1.2,certuser=NAME,server=box,pipe=secure", E,
     "spipe:Proto=tls1.2,Certuser=NAME,Pipe=secure,Server=box", C},
    {"spipe:proto=tls1,machuser=NAME,server=box,pipe=secure,password=*", C,
     "spipe:Proto=tls1,Machuser=NAME,Pipe=secure,Password=*,Server=box", C},
    /* ssl */
    {"ssl:proto=tls1,certuser=NAME,port=5005", E, "ssl:Proto=tls1,Certuser=NAME,Port=5005", S},
    {"ssl:proto=tls1,machuser=\"ab cd ef 01\",port=51:60,hidden", E,
     "ssl:Proto=tls1,Machuser=\"ab cd ef 01\",Port=51:60,Hidden", S},
    {"ssl:proto=tls1,certuser=a b,port=1", E, "ssl:Proto=tls1,Certuser=\"a b\",Port=1", S},
    {"ssl:proto=tls1,certuser=" S200 ",port=1", E, "ssl:Proto=tls1,Certuser=" S200 ",Port=1", S},
    {"ssl:Proto=Tls1,CertUser=01:23:45:ab,PORT=5005", E,
     "ssl:Proto=tls1,Certuser=01:23:45:ab,Port=5005", S},
    {"ssl:proto=tls1,certuser=NAME,port=5005,clicon=cl", E,
     "ssl:Proto=tls1,Certuser=NAME,Port=5005,Clicon=cl", E},
    {"ssl:proto=tls1,certuser=NAME,clicon=cl,port=1:9", E,
     "ssl:Proto=tls1,Certuser=NAME,Port=1:9,Clicon=cl", C},
    {"ssl:proto=tls1,certuser=\"a,b\",server=box,port=5005,password=*", E,
     "ssl:Proto=tls1,Certuser=\"a,b\",Port=5005,Password=*,Server=box", C},
    {"ssl:proto=tls1.3,certuser=x,server=h,port=53:60", C,
     "ssl:Proto=tls1.3,Certuser=x,Port=53:60,Server=h", C},
    /* Foreign: a client's, for a server that speaks its own protocol */
    {"tcp:port=2345,foreign,server=box17", E, "tcp:Port=2345,Foreign,Server=box17", C},
    {"tcp:Port=2345,Foreign,Server=box17", C, "tcp:Port=2345,Foreign,Server=box17", C},
    {"TCP:FOREIGN,server=::1,port=1,ipversion=6", E, "tcp:Port=1,Ipversion=6,Foreign,Server=::1",
     C},
    {"npipe:pipe=lldb,Foreign,server=.", E, "npipe:Pipe=lldb,Foreign,Server=.", C},
    {"ssl:proto=tls1,certuser=x,port=7,server=h,fOrEiGn", E,
     "ssl:Proto=tls1,Certuser=x,Port=7,Foreign,Server=h", C},
    {"spipe:proto=tls1,certuser=x,pipe=p,server=h,foreign", C,
     "spipe:Proto=tls1,Certuser=x,Pipe=p,Foreign,Server=h", C},
};

static const struct invalid_row invalid[] = {
    /* the whole string */
    {"", E, "empty transport string: expected proto:item[,item...], e.g. tcp:port=5005"},
    {"  \t ", E, "empty transport string: expected proto:item[,item...], e.g. tcp:port=5005"},
    {"tcpport=5005", E,
     "\"tcpport=5005\": expected proto:item[,item...] with proto npipe, tcp, com, spipe or ssl"},
    {S50 "0123456789XYZ", E,
     "\"" S50 "0123456789...\": expected proto:item[,item...] with proto npipe, tcp, com, spipe "
     "or ssl"},
    {"tcp,port=1,password=secret", E,
     "\"tcp,port=1,password=*\": expected proto:item[,item...] with proto npipe, tcp, com, spipe "
     "or ssl"},
    {"tcp:port=5005,certuser=" S1000 S10, E, "transport string too long: at most 1024 characters"},
    {"udp:port=5", E, "unknown protocol \"udp\": use npipe, tcp, com, spipe or ssl"},
    {" tcp :port=5", E, "unknown protocol \"tcp \": use npipe, tcp, com, spipe or ssl"},
    /* items */
    {"tcp:port=5005,,hidden", E, "empty item: remove the extra comma"},
    {"tcp:port=5005,", E, "empty item: remove the extra comma"},
    {"tcp:,port=5005", E, "empty item: remove the extra comma"},
    {"tcp:port=5005,baud=9600", E,
     "unknown item \"baud\" for tcp: tcp takes port, server, clicon, password, hidden, ipversion, "
     "IcfEnable, Foreign"},
    {"tcp:port=5005, hidden", E,
     "unknown item \" hidden\" for tcp: tcp takes port, server, clicon, password, hidden, "
     "ipversion, IcfEnable, Foreign"},
    {"npipe:pipe=a,port=5", E,
     "unknown item \"port\" for npipe: npipe takes pipe, server, password, hidden, IcfEnable, "
     "Foreign"},
    {"npipe:pipe=a,ipversion=6", E,
     "unknown item \"ipversion\" for npipe: npipe takes pipe, server, password, hidden, "
     "IcfEnable, Foreign"},
    {"com:port=1,baud=9600,channel=0,Server=h", E,
     "unknown item \"Server\" for com: com takes port, baud, channel, password, hidden"},
    {"spipe:proto=tls1,certuser=c,pipe=p,port=5", E,
     "unknown item \"port\" for spipe: spipe takes proto, certuser, machuser, pipe, server, "
     "password, hidden, Foreign"},
    {"ssl:proto=tls1,certuser=c,port=5,pipe=p", E,
     "unknown item \"pipe\" for ssl: ssl takes proto, certuser, machuser, port, server, clicon, "
     "password, hidden, Foreign"},
    {"tcp:port=5005,port=5006", E, "port: given twice"},
    {"tcp:PORT=1,Port=1", E, "port: given twice"},
    {"npipe:pipe=a,icfenable,IcfEnable", E, "IcfEnable: given twice"},
    {"tcp:port=1,password=a,password=a", E, "password: given twice"},
    {"tcp:port=5005,hidden=yes", E, "hidden takes no value"},
    {"tcp:port=5005,server=h,Foreign=1", E, "Foreign takes no value"},
    {"tcp:port=5005,server=h,foreign,Foreign", E, "Foreign: given twice"},
    /* Foreign: refused where it makes no sense */
    {"tcp:port=5005,server=h,foreign,password=Secret12", E,
     "Foreign cannot be used with password: a foreign server checks no rdq password (it is "
     "reached as it is); leave the password out"},
    {"tcp:port=5005,server=h,password=*,foreign", C,
     "Foreign cannot be used with password: a foreign server checks no rdq password (it is "
     "reached as it is); leave the password out"},
    {"tcp:port=5005,clicon=h,foreign", E,
     "Foreign cannot be used with clicon: a foreign server dials no client; use server="},
    {"tcp:port=5005,foreign", S,
     "Foreign is for clients: it says that the server speaks its own protocol, and an rdq server "
     "speaks rdq's (make a foreign server discoverable with rdsrv -announce)"},
    {"npipe:pipe=p,foreign", S,
     "Foreign is for clients: it says that the server speaks its own protocol, and an rdq server "
     "speaks rdq's (make a foreign server discoverable with rdsrv -announce)"},
    {"tcp:port=5005,foreign", E, "tcp needs server=Host"},
    {"tcp:port=5005,foreign,hidden", E, "hidden is for servers: a client string does not take it"},
    {"com:port=1,baud=9600,channel=0,foreign", E,
     "Foreign is for tcp, ssl, npipe and spipe: a com channel is rdq's own framing of the line, "
     "which no foreign server speaks"},
    {"tcp:port=5005,IcfEnable=", E, "IcfEnable takes no value"},
    {"tcp:port", E, "port needs a value: port=..."},
    {"tcp:port=", E, "port needs a value: port=..."},
    {"tcp:port=\"\"", E, "port needs a value: port=..."},
    {"npipe:pipe=a,server", E, "server needs a value: server=..."},
    {"ssl:proto=tls1,certuser=,port=1", E, "certuser needs a value: certuser=..."},
    {"ssl:proto=tls1,certuser=\"abc,port=5", E, "unterminated quote in item \"certuser\""},
    {"tcp:port=1,password=\"abc", E, "unterminated quote in item \"password\""},
    /* pipe= */
    {"npipe:pipe=a b", E, "pipe: no spaces, quotes or slashes in a pipe name"},
    {"npipe:pipe=a/b", E, "pipe: no spaces, quotes or slashes in a pipe name"},
    {"npipe:pipe=\"ab\"", E, "pipe: no spaces, quotes or slashes in a pipe name"},
    {"npipe:pipe=a'b", E, "pipe: no spaces, quotes or slashes in a pipe name"},
    {"npipe:pipe=a\tb", E, "pipe: no spaces, quotes or slashes in a pipe name"},
    {"npipe:pipe=..", E, "pipe: no spaces, quotes or slashes in a pipe name"},
    {"npipe:pipe=" S50 S10 S10 S10 "x", E, "pipe: at most 80 characters"},
    {"npipe:pipe=a%s", E,
     "pipe: \"%\" must start a printf code such as %d or %x (or write %% for a percent sign)"},
    {"npipe:pipe=a%", E,
     "pipe: \"%\" must start a printf code such as %d or %x (or write %% for a percent sign)"},
    {"npipe:pipe=a%-4d", E,
     "pipe: \"%\" must start a printf code such as %d or %x (or write %% for a percent sign)"},
    {"npipe:pipe=%d%x%u", E, "pipe: at most two printf codes (process id, then thread id)"},
    {"npipe:server=h,pipe=a%d", E,
     "pipe: a client names the pipe as the server lists it, without printf codes"},
    {"npipe:pipe=a%08x", C,
     "pipe: a client names the pipe as the server lists it, without printf codes"},
    /* server=, clicon= */
    {"tcp:server=bad host,port=1", E, "server: \"bad host\" is not a host name or IP address"},
    {"tcp:clicon=a/b,port=1", E, "clicon: \"a/b\" is not a host name or IP address"},
    {"tcp:server=\\\\,port=1", E, "server: \"\\\\\" is not a host name or IP address"},
    {"tcp:server=\\host,port=1", E, "server: \"\\host\" is not a host name or IP address"},
    {"tcp:server=[::1,port=1", E, "server: \"[::1\" is not a host name or IP address"},
    {"tcp:server=[],port=1", E, "server: \"[]\" is not a host name or IP address"},
    {"tcp:port=1,server=" S200 S50 "abcdef", E,
     "server: \"" S50 S10 "...\" is not a host name or IP address"},
    /* port= (tcp, ssl) */
    {"tcp:port=0", E, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60"},
    {"tcp:port=65536", E, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60"},
    {"tcp:port=abc", E, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60"},
    {"tcp:port=5:", E, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60"},
    {"tcp:port=-1", E, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60"},
    {"tcp:port=1:2:3", E, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60"},
    {"tcp:port= 5", E, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60"},
    {"ssl:proto=tls1,certuser=a,port=0:5", E,
     "port: expected a port 1 to 65535 or a range lo:hi such as 51:60"},
    {"tcp:port=60:51", E, "port: range 60:51 runs backwards: write the low port first"},
    {"tcp:port=51:60,clicon=c", S,
     "port: a clicon server gives one port, not a range (the client may give a range)"},
    /* port= (com), baud=, channel= */
    {"com:port=COM0,baud=1,channel=0", E,
     "port: expected COMn, n, or a device path such as /dev/ttyUSB0"},
    {"com:port=COMX,baud=1,channel=0", E,
     "port: expected COMn, n, or a device path such as /dev/ttyUSB0"},
    {"com:port=tty0,baud=1,channel=0", E,
     "port: expected COMn, n, or a device path such as /dev/ttyUSB0"},
    {"com:port=/dev/,baud=1,channel=0", E,
     "port: expected COMn, n, or a device path such as /dev/ttyUSB0"},
    {"com:port=\"/dev/tty S0\",baud=1,channel=0", E,
     "port: expected COMn, n, or a device path such as /dev/ttyUSB0"},
    {"com:port=/dev/../etc/passwd,baud=1,channel=0", E,
     "port: expected COMn, n, or a device path such as /dev/ttyUSB0"},
    {"com:port=1,baud=0,channel=0", E,
     "baud: expected a rate such as 9600 or 115200 (1 to 4000000)"},
    {"com:port=1,baud=4000001,channel=0", E,
     "baud: expected a rate such as 9600 or 115200 (1 to 4000000)"},
    {"com:port=1,baud=fast,channel=0", E,
     "baud: expected a rate such as 9600 or 115200 (1 to 4000000)"},
    {"com:port=1,baud=9600,channel=255", E, "channel: 0 to 254"},
    {"com:port=1,baud=9600,channel=-1", E, "channel: 0 to 254"},
    /* proto=, certuser=, machuser= */
    {"ssl:proto=ssl3,certuser=a,port=1", E, "ssl3 is obsolete and insecure: use proto=tls1"},
    {"ssl:proto=SSL2,certuser=a,port=1", E, "ssl2 is obsolete and insecure: use proto=tls1"},
    {"spipe:proto=Pct1,certuser=a,pipe=p", E, "pct1 is obsolete and insecure: use proto=tls1"},
    {"ssl:proto=tls2,certuser=a,port=1", E, "proto: use tls1 (TLS 1.2 or later), tls1.2 or tls1.3"},
    {"ssl:proto=tls1,certuser=a,machuser=b,port=1", E,
     "certuser and machuser cannot be used together: name the certificate once"},
    {"ssl:proto=tls1,certuser=" S200 "x,port=1", E,
     "certuser: a certificate name or thumbprint, at most 200 characters"},
    {"spipe:proto=tls1,machuser=" S200 "x,pipe=p", E,
     "machuser: a certificate name or thumbprint, at most 200 characters"},
    /* password= */
    {"tcp:port=1,password=abc-def", E, "password: at most 12 letters or digits"},
    {"tcp:port=1,password=abcdefghijklm", E, "password: at most 12 letters or digits"},
    {"tcp:port=1,password=\"a b\"", E, "password: at most 12 letters or digits"},
    {"tcp:port=1,password=*", E, "password: a server sets the password itself; * is for clients"},
    {"com:port=1,baud=1,channel=1,password=*", S,
     "password: a server sets the password itself; * is for clients"},
    {"com:port=1,baud=1,channel=1,hidden,password=*", E,
     "password: a server sets the password itself; * is for clients"},
    /* hidden, IcfEnable, ipversion= */
    {"tcp:port=1,clicon=c,hidden", E, "clicon servers cannot be hidden"},
    {"ssl:proto=tls1,certuser=a,port=1,clicon=c,hidden", E, "clicon servers cannot be hidden"},
    {"tcp:port=1,clicon=c,IcfEnable", E, "IcfEnable cannot be used with clicon"},
    {"com:port=1,baud=1,channel=1,IcfEnable", E, "IcfEnable is for tcp and npipe only"},
    {"spipe:proto=tls1,certuser=a,pipe=p,IcfEnable", E, "IcfEnable is for tcp and npipe only"},
    {"ssl:proto=tls1,certuser=a,port=1,icfenable", E, "IcfEnable is for tcp and npipe only"},
    {"tcp:server=h,port=1,hidden", E, "hidden is for servers: a client string does not take it"},
    {"tcp:port=1,hidden", C, "hidden is for servers: a client string does not take it"},
    {"com:port=1,baud=1,channel=1,hidden", C,
     "hidden is for servers: a client string does not take it"},
    {"npipe:server=h,pipe=a,IcfEnable", E,
     "IcfEnable is for servers: a client string does not take it"},
    {"tcp:port=1,ipversion=4", E,
     "ipversion: only ipversion=6 is accepted (leave it out for the default)"},
    {"tcp:port=1,ipversion=06", E,
     "ipversion: only ipversion=6 is accepted (leave it out for the default)"},
    /* sides */
    {"tcp:server=a,clicon=b,port=1", E,
     "server and clicon cannot be used together: use server= to reach a server, clicon= for a "
     "reverse connection"},
    {"tcp:server=h,port=1", S, "server= is for clients: a server string names no server"},
    {"npipe:server=h,pipe=p", S, "server= is for clients: a server string names no server"},
    /* required items, first missing first */
    {"npipe:hidden", E, "npipe needs pipe=Name"},
    {"npipe:pipe=a", C, "npipe needs server=Host"},
    {"tcp:", E, "tcp needs port=Socket (a port such as 5005 or a range such as 51:60)"},
    {"tcp:hidden", E, "tcp needs port=Socket (a port such as 5005 or a range such as 51:60)"},
    {"tcp:clicon=c", E, "tcp needs port=Socket (a port such as 5005 or a range such as 51:60)"},
    {"tcp:port=1", C, "tcp needs server=Host or clicon=Host"},
    {"com:baud=1,channel=1", E, "com needs port=COMPort (COM2, 2 or /dev/ttyUSB0)"},
    {"com:port=1", E, "com needs baud=BaudRate"},
    {"com:port=1,baud=9600", E, "com needs channel=COMChannel (0 to 254)"},
    {"ssl:certuser=a,port=1", E, "ssl needs proto=tls1"},
    {"ssl:port=1", E, "ssl needs proto=tls1"},
    {"ssl:proto=tls1,port=1", E, "ssl needs certuser=Cert or machuser=Cert"},
    {"ssl:proto=tls1,certuser=a,server=h", E,
     "ssl needs port=Socket (a port such as 5005 or a range such as 51:60)"},
    {"ssl:proto=tls1,certuser=a,port=1", C, "ssl needs server=Host or clicon=Host"},
    {"spipe:proto=tls1,certuser=a", E, "spipe needs pipe=Name"},
    {"spipe:proto=tls1,certuser=a,pipe=p", C, "spipe needs server=Host"},
    /* the first bad item is the one reported */
    {"tcp:port=abc,baud=1", E, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60"},
    {"tcp:baud=1,port=abc", E,
     "unknown item \"baud\" for tcp: tcp takes port, server, clicon, password, hidden, ipversion, "
     "IcfEnable, Foreign"},
};

#define N_VALID (sizeof valid / sizeof valid[0])
#define N_INVALID (sizeof invalid / sizeof invalid[0])

static void must_parse(const char *s, enum rdt_side side, struct rdt_tstring *ts)
{
    char err[RDT_ERR_MAX];
    int rc = rdt_parse(s, side, ts, err, sizeof err);

    cr_assert_eq(rc, 0, "\"%s\" (%s): %s", s, rdt_side_name(side), err);
}

static void must_format(const struct rdt_tstring *ts, enum rdt_form form, const char *host,
                        uint16_t bound, const char *want)
{
    char buf[RDT_STRING_MAX + 1];
    int n = rdt_format(ts, form, host, bound, buf, sizeof buf);

    cr_assert_geq(n, 0, "format %d of \"%s\": %d", (int)form, want, n);
    cr_expect_str_eq(buf, want);
    cr_expect_eq((size_t)n, strlen(buf));
}

static bool same_fields(const struct rdt_tstring *a, const struct rdt_tstring *b)
{
    return a->proto == b->proto && !strcmp(a->pipe, b->pipe) && !strcmp(a->server, b->server) &&
           !strcmp(a->clicon, b->clicon) && a->port_lo == b->port_lo && a->port_hi == b->port_hi &&
           !strcmp(a->com_port, b->com_port) && !strcmp(a->com_device, b->com_device) &&
           a->baud == b->baud && a->channel == b->channel && a->tls_min == b->tls_min &&
           !strcmp(a->proto_name, b->proto_name) && !strcmp(a->cert, b->cert) &&
           a->machine_store == b->machine_store && a->password_ask == b->password_ask &&
           a->hidden == b->hidden && a->icf_enable == b->icf_enable && a->ipv6 == b->ipv6 &&
           a->foreign == b->foreign;
}

Test(tstring, valid_rows)
{
    char err[RDT_ERR_MAX], buf[RDT_STRING_MAX + 1];
    struct rdt_tstring ts;

    for (size_t i = 0; i < N_VALID; i++) {
        const struct valid_row *r = &valid[i];
        int rc = rdt_parse(r->in, r->asked, &ts, err, sizeof err);

        cr_expect_eq(rc, 0, "row %zu \"%s\": %s", i, r->in, err);
        if (rc)
            continue;
        cr_expect_eq(ts.side, r->side, "row %zu \"%s\": side %s, want %s", i, r->in,
                     rdt_side_name(ts.side), rdt_side_name(r->side));
        rc = rdt_format(&ts, RDT_FORM_CANON, NULL, 0, buf, sizeof buf);
        cr_expect_eq(rc, (int)strlen(r->canon), "row %zu \"%s\": length %d", i, r->in, rc);
        cr_expect_str_eq(buf, r->canon, "row %zu \"%s\": got \"%s\"", i, r->in, buf);
    }
}

/* Parses the canonical form again: it must give the same string (and side). */
static void round_trip(size_t i, const struct valid_row *r, struct rdt_tstring *ts)
{
    char err[RDT_ERR_MAX], one[RDT_STRING_MAX + 1], two[RDT_STRING_MAX + 1];
    struct rdt_tstring again;
    int rc;

    rdt_format(ts, RDT_FORM_CANON, NULL, 0, one, sizeof one);
    rc = rdt_parse(one, r->asked, &again, err, sizeof err);
    cr_expect_eq(rc, 0, "row %zu: \"%s\" again: %s", i, one, err);
    if (rc)
        return;
    rdt_format(&again, RDT_FORM_CANON, NULL, 0, two, sizeof two);
    cr_expect_str_eq(two, one, "row %zu: \"%s\" then \"%s\"", i, one, two);
    cr_expect(same_fields(ts, &again), "row %zu: \"%s\" fields differ", i, one);
}

Test(tstring, round_trips)
{
    struct rdt_tstring ts;

    for (size_t i = 0; i < N_VALID; i++) {
        const struct valid_row *r = &valid[i];

        if (rdt_parse(r->in, r->asked, &ts, NULL, 0) != 0)
            continue; /* reported by valid_rows */
        if (ts.password[0] && ts.side != RDT_CLIENT) {
            /* Password=* is for clients: check the rest of a server string. */
            memset(ts.password, 0, sizeof ts.password);
        } else if (ts.password[0]) {
            /* a client's password comes back as Password=* (ask) */
            memset(ts.password, 0, sizeof ts.password);
            ts.password_ask = true;
        }
        round_trip(i, r, &ts);
    }
}

Test(tstring, round_trip_password_ask)
{
    char buf[RDT_STRING_MAX + 1];
    struct rdt_tstring ts, again;

    must_parse("com:port=1,baud=9600,channel=1,password=abc", RDT_EITHER, &ts);
    cr_expect_eq(ts.side, RDT_EITHER);
    rdt_format(&ts, RDT_FORM_CANON, NULL, 0, buf, sizeof buf);
    cr_expect_str_eq(buf, "com:Port=COM1,Baud=9600,Channel=1,Password=*");
    must_parse(buf, RDT_EITHER, &again);
    cr_expect_eq(again.side, RDT_CLIENT);
    cr_expect(again.password_ask);
    cr_expect_str_eq(again.password, "");
}

Test(tstring, invalid_rows)
{
    char err[RDT_ERR_MAX];
    struct rdt_tstring ts;

    for (size_t i = 0; i < N_INVALID; i++) {
        const struct invalid_row *r = &invalid[i];
        int rc;

        memset(err, 'x', sizeof err);
        rc = rdt_parse(r->in, r->asked, &ts, err, sizeof err);
        cr_expect_eq(rc, -EINVAL, "row %zu \"%.80s\": rc %d", i, r->in, rc);
        cr_expect_str_eq(err, r->err, "row %zu \"%.80s\": got \"%s\"", i, r->in, err);
        cr_expect_null(strstr(err, "secret"), "row %zu leaks a password", i);
    }
}

Test(tstring, failure_clears_output)
{
    struct rdt_tstring ts, zero;

    memset(&zero, 0, sizeof zero);
    memset(&ts, 0x5a, sizeof ts);
    cr_expect_eq(rdt_parse("tcp:port=1,password=abc,baud=1", RDT_EITHER, &ts, NULL, 0), -EINVAL);
    cr_expect_eq(memcmp(&ts, &zero, sizeof ts), 0);
}

Test(tstring, errors_never_show_passwords)
{
    static const char *const in[] = {
        "tcp:port=1,password=Secret1234567",
        "tcp:port=1,password=Secret12,password=Secret12",
        "password=Secret12,tcp:port=1",
        "tcp,port=1,password=\"Secret,12\"",
        "tcp:port=1,password=Secret12,server=\"h,password=Secret12\"",
        "tcp:port=1,password=Secret12",
    };
    char err[RDT_ERR_MAX];
    struct rdt_tstring ts;

    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        cr_expect_eq(rdt_parse(in[i], RDT_EITHER, &ts, err, sizeof err), i < 5 ? -EINVAL : 0);
        cr_expect_null(strstr(err, "Secret"), "\"%s\" gave \"%s\"", in[i], err);
    }
}

Test(tstring, bad_arguments_and_small_error_buffers)
{
    char err[16];
    struct rdt_tstring ts;

    cr_expect_eq(rdt_parse(NULL, RDT_EITHER, &ts, NULL, 0), -EINVAL);
    cr_expect_eq(rdt_parse("tcp:port=1", RDT_EITHER, NULL, NULL, 0), -EINVAL);
    cr_expect_eq(rdt_parse("tcp:port=1", (enum rdt_side)7, &ts, NULL, 0), -EINVAL);
    cr_expect_eq(rdt_parse("tcp:port=0", RDT_EITHER, &ts, err, sizeof err), -EINVAL);
    cr_expect_str_eq(err, "port: expected ");
    cr_expect_eq(rdt_parse("tcp:port=0", RDT_EITHER, &ts, NULL, 0), -EINVAL);
    cr_expect_eq(rdt_parse("tcp:port=1", RDT_EITHER, &ts, err, sizeof err), 0);
    cr_expect_str_eq(err, "");
}

Test(tstring, fields)
{
    struct rdt_tstring ts;

    must_parse("com:port=com3,baud=115200,channel=9,password=Pw1", RDT_EITHER, &ts);
    cr_expect_eq(ts.proto, RDT_COM);
    cr_expect_str_eq(ts.com_port, "COM3");
    cr_expect_str_eq(ts.com_device, "/dev/ttyS2");
    cr_expect_eq(ts.baud, 115200);
    cr_expect_eq(ts.channel, 9);
    cr_expect_str_eq(ts.password, "Pw1");
    cr_expect_not(ts.password_ask);

    must_parse("com:port=/dev/ttyUSB0,baud=9600,channel=0", RDT_SERVER, &ts);
    cr_expect_str_eq(ts.com_port, "/dev/ttyUSB0");
    cr_expect_str_eq(ts.com_device, "/dev/ttyUSB0");

    must_parse("ssl:proto=TLS1.3,machuser=\"ab, cd\",port=51:60,server=\\\\h", RDT_CLIENT, &ts);
    cr_expect_eq(ts.tls_min, 13);
    cr_expect_str_eq(ts.proto_name, "tls1.3");
    cr_expect_str_eq(ts.cert, "ab, cd");
    cr_expect(ts.machine_store);
    cr_expect_eq(ts.port_lo, 51);
    cr_expect_eq(ts.port_hi, 60);
    cr_expect_str_eq(ts.server, "h");

    must_parse("spipe:proto=tls1.2,certuser=c,pipe=p", RDT_EITHER, &ts);
    cr_expect_eq(ts.tls_min, 12);
    cr_expect_not(ts.machine_store);
}

Test(tstring, fields_flags_and_hosts)
{
    struct rdt_tstring ts;

    must_parse("tcp:port=7,ipversion=6,hidden,IcfEnable", RDT_EITHER, &ts);
    cr_expect(ts.ipv6);
    cr_expect(ts.hidden);
    cr_expect(ts.icf_enable);
    cr_expect_eq(ts.port_lo, 7);
    cr_expect_eq(ts.port_hi, 7);

    must_parse("tcp:port=7,server=[::1]", RDT_EITHER, &ts);
    cr_expect_str_eq(ts.server, "::1");
    must_parse("tcp:port=7,clicon=\\\\[fe80::1%eth0]", RDT_EITHER, &ts);
    cr_expect_str_eq(ts.clicon, "fe80::1%eth0");
    cr_expect_eq(ts.side, RDT_EITHER);
    must_parse("tcp:port=7,server=h,password=*", RDT_EITHER, &ts);
    cr_expect(ts.password_ask);
    cr_expect_str_eq(ts.password, "");
    must_parse("tcp:port=1,server=" S200 S50 "abcde", RDT_EITHER, &ts);
    cr_expect_eq(strlen(ts.server), RDT_HOST_MAX);
}

Test(tstring, foreign)
{
    struct rdt_tstring ts;

    must_parse("tcp:port=2345,server=h,Foreign", RDT_CLIENT, &ts);
    cr_expect(ts.foreign);
    cr_expect_eq(ts.side, RDT_CLIENT);
    must_format(&ts, RDT_FORM_ADVERT, NULL, 0, "tcp:Port=2345,Foreign");
    must_format(&ts, RDT_FORM_CLIENT, "box17", 0, "tcp:Port=2345,Foreign,Server=box17");
    must_parse("tcp:port=2345,server=h", RDT_CLIENT, &ts);
    cr_expect_not(ts.foreign);

    /* a server string with the flag set by its program (rdsrv -announce) lists it so, and
     * the listed string, with Server=, is a client string again */
    must_parse("tcp:port=2345:2350,ipversion=6", RDT_SERVER, &ts);
    ts.foreign = true;
    must_format(&ts, RDT_FORM_ADVERT, NULL, 0, "tcp:Port=2345:2350,Ipversion=6,Foreign");
    must_parse("tcp:Port=2345:2350,Ipversion=6,Foreign,Server=box17", RDT_CLIENT, &ts);
    cr_expect(ts.foreign);

    cr_expect(rdt_string_foreign("tcp:Port=2345,Foreign"));
    cr_expect(rdt_string_foreign("tcp:foreign,port=2345,server=h"));
    cr_expect(rdt_string_foreign("ssl:Proto=tls1,Certuser=\"a,b\",Port=1,FOREIGN"));
    cr_expect_not(rdt_string_foreign("tcp:Port=2345"));
    cr_expect_not(rdt_string_foreign("tcp:Port=2345,Foreign=1"));
    cr_expect_not(rdt_string_foreign("tcp:Port=2345,Foreigner"));
    cr_expect_not(rdt_string_foreign("ssl:Proto=tls1,Certuser=\"x,Foreign\",Port=1"));
    cr_expect_not(rdt_string_foreign("ssl:Proto=tls1,Certuser=\"x,Foreign"));
    cr_expect_not(rdt_string_foreign("Foreign"));
    cr_expect_not(rdt_string_foreign("tcp:"));
    cr_expect_not(rdt_string_foreign(""));
    cr_expect_not(rdt_string_foreign(NULL));
}

Test(format, advert)
{
    struct rdt_tstring ts;

    must_parse("tcp:port=51:60,password=abc", RDT_EITHER, &ts);
    must_format(&ts, RDT_FORM_CANON, NULL, 0, "tcp:Port=51:60,Password=*");
    must_format(&ts, RDT_FORM_ADVERT, NULL, 53, "tcp:Port=53:60,Password=*");
    must_format(&ts, RDT_FORM_ADVERT, NULL, 60, "tcp:Port=60,Password=*");
    must_format(&ts, RDT_FORM_CANON, NULL, 53, "tcp:Port=53:60,Password=*");

    must_parse("tcp:port=5005,hidden,IcfEnable,ipversion=6,password=x", RDT_SERVER, &ts);
    must_format(&ts, RDT_FORM_ADVERT, NULL, 0, "tcp:Port=5005,Password=*,Ipversion=6");

    must_parse("npipe:pipe=MainPipe,hidden", RDT_EITHER, &ts);
    must_format(&ts, RDT_FORM_ADVERT, NULL, 0, "npipe:Pipe=MainPipe");

    must_parse("tcp:port=5005,clicon=cl", RDT_SERVER, &ts);
    must_format(&ts, RDT_FORM_ADVERT, NULL, 0, "tcp:Port=5005");

    must_parse("ssl:proto=tls1,certuser=NAME,port=5005", RDT_EITHER, &ts);
    must_format(&ts, RDT_FORM_ADVERT, NULL, 5005, "ssl:Proto=tls1,Certuser=NAME,Port=5005");

    must_parse("com:port=COM2,baud=115200,channel=3,hidden", RDT_EITHER, &ts);
    must_format(&ts, RDT_FORM_ADVERT, NULL, 7, "com:Port=COM2,Baud=115200,Channel=3");
}

Test(format, client)
{
    char buf[RDT_STRING_MAX + 1], err[RDT_ERR_MAX];
    struct rdt_tstring ts, c;

    must_parse("tcp:port=51:60,password=abc", RDT_EITHER, &ts);
    must_format(&ts, RDT_FORM_CLIENT, "box17", 53, "tcp:Port=53:60,Password=*,Server=box17");
    rdt_format(&ts, RDT_FORM_CLIENT, "box17", 53, buf, sizeof buf);
    cr_expect_eq(rdt_parse(buf, RDT_EITHER, &c, err, sizeof err), 0, "%s", err);
    cr_expect_eq(c.side, RDT_CLIENT);
    cr_expect_eq(c.port_lo, 53);
    cr_expect(c.password_ask);

    must_format(&ts, RDT_FORM_CLIENT, "\\\\BOX17", 0, "tcp:Port=51:60,Password=*,Server=BOX17");
    must_format(&ts, RDT_FORM_CLIENT, "[::1]", 0, "tcp:Port=51:60,Password=*,Server=::1");
    cr_expect_eq(rdt_format(&ts, RDT_FORM_CLIENT, "bad host", 0, buf, sizeof buf), -EINVAL);

    must_parse("npipe:pipe=MainPipe,hidden,IcfEnable", RDT_EITHER, &ts);
    must_format(&ts, RDT_FORM_CLIENT, "box17", 0, "npipe:Pipe=MainPipe,Server=box17");

    must_parse("tcp:server=box17,port=5005,password=*", RDT_EITHER, &ts);
    must_format(&ts, RDT_FORM_CLIENT, NULL, 0, "tcp:Port=5005,Password=*,Server=box17");
    must_format(&ts, RDT_FORM_ADVERT, NULL, 0, "tcp:Port=5005,Password=*");

    must_parse("tcp:port=5005,clicon=cl", RDT_SERVER, &ts);
    must_format(&ts, RDT_FORM_CLIENT, NULL, 0, "tcp:Port=5005,Clicon=cl");
    must_format(&ts, RDT_FORM_CLIENT, "other", 0, "tcp:Port=5005,Server=other");

    /* com has no server=: the client string is the advertised one */
    must_parse("com:port=COM2,baud=115200,channel=3", RDT_EITHER, &ts);
    must_format(&ts, RDT_FORM_CLIENT, "box17", 0, "com:Port=COM2,Baud=115200,Channel=3");

    must_parse("ssl:proto=tls1,certuser=\"a b\",port=5005", RDT_EITHER, &ts);
    must_format(&ts, RDT_FORM_CLIENT, "h", 0, "ssl:Proto=tls1,Certuser=\"a b\",Port=5005,Server=h");
}

Test(format, errors)
{
    char buf[RDT_STRING_MAX + 1];
    struct rdt_tstring ts;
    const char *want = "tcp:Port=51:60,Password=*";
    size_t n = strlen(want);

    must_parse("tcp:port=51:60,password=abc", RDT_EITHER, &ts);
    cr_expect_eq(rdt_format(&ts, RDT_FORM_CANON, NULL, 0, buf, n + 1), (int)n);
    cr_expect_str_eq(buf, want);
    for (size_t len = 0; len <= n; len++)
        cr_expect_eq(rdt_format(&ts, RDT_FORM_CANON, NULL, 0, buf, len), -ENOSPC, "len %zu", len);
    cr_expect_eq(rdt_format(&ts, RDT_FORM_CANON, NULL, 0, buf, 5), -ENOSPC);
    cr_expect_str_eq(buf, "");
    cr_expect_eq(rdt_format(NULL, RDT_FORM_CANON, NULL, 0, buf, sizeof buf), -EINVAL);
    cr_expect_eq(rdt_format(&ts, RDT_FORM_CANON, NULL, 0, NULL, 10), -EINVAL);
    cr_expect_eq(rdt_format(&ts, (enum rdt_form)9, NULL, 0, buf, sizeof buf), -EINVAL);
    cr_expect_eq(rdt_format(&ts, RDT_FORM_ADVERT, NULL, 50, buf, sizeof buf), -EINVAL);
    cr_expect_eq(rdt_format(&ts, RDT_FORM_ADVERT, NULL, 61, buf, sizeof buf), -EINVAL);
}

Test(pipe, expand)
{
    static const struct {
        const char *name, *want;
    } rows[] = {
        {"plain", "plain"},    {"dbg%d", "dbg1234"}, {"dbg%d_%d", "dbg1234_77"},
        {"p%x.%X", "p4d2.4D"}, {"p%04x", "p04d2"},   {"p%08d", "p00001234"},
        {"p%6u|", "p  1234|"}, {"%i%i", "123477"},   {"100%%", "100%"},
        {"a%%d%d", "a%d1234"}, {"%%%x%%", "%4d2%"},
    };
    char buf[64];

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int n = rdt_pipe_expand(rows[i].name, 1234, 77, buf, sizeof buf);

        cr_expect_eq(n, (int)strlen(rows[i].want), "\"%s\": %d", rows[i].name, n);
        cr_expect_str_eq(buf, rows[i].want, "\"%s\": got \"%s\"", rows[i].name, buf);
    }
}

Test(pipe, expand_errors)
{
    char buf[8];

    cr_expect_eq(rdt_pipe_expand("dbg%d", 1234, 1, buf, sizeof buf), 7);
    cr_expect_eq(rdt_pipe_expand("dbg%d", 12345, 1, buf, sizeof buf), -ENOSPC);
    cr_expect_eq(rdt_pipe_expand("dbg", 1, 1, buf, 0), -ENOSPC);
    cr_expect_eq(rdt_pipe_expand("%99999999d", 1, 1, buf, sizeof buf), -ENOSPC);
    cr_expect_eq(rdt_pipe_expand("a%s", 1, 1, buf, sizeof buf), -EINVAL);
    cr_expect_eq(rdt_pipe_expand("a%", 1, 1, buf, sizeof buf), -EINVAL);
    cr_expect_eq(rdt_pipe_expand("%d%d%d", 1, 1, buf, sizeof buf), -EINVAL);
    cr_expect_eq(rdt_pipe_expand(NULL, 1, 1, buf, sizeof buf), -EINVAL);
    cr_expect_eq(rdt_pipe_expand("a", 1, 1, NULL, 4), -EINVAL);
}

Test(names, proto_and_side)
{
    cr_expect_str_eq(rdt_proto_name(RDT_NPIPE), "npipe");
    cr_expect_str_eq(rdt_proto_name(RDT_TCP), "tcp");
    cr_expect_str_eq(rdt_proto_name(RDT_COM), "com");
    cr_expect_str_eq(rdt_proto_name(RDT_SPIPE), "spipe");
    cr_expect_str_eq(rdt_proto_name(RDT_SSL), "ssl");
    cr_expect_str_eq(rdt_proto_name((enum rdt_proto)42), "unknown");
    cr_expect_str_eq(rdt_side_name(RDT_EITHER), "server or client");
    cr_expect_str_eq(rdt_side_name(RDT_SERVER), "server");
    cr_expect_str_eq(rdt_side_name(RDT_CLIENT), "client");
    cr_expect_str_eq(rdt_side_name((enum rdt_side)42), "unknown");
}

Test(tstring, length_limit)
{
    char in[RDT_STRING_MAX + 16], err[RDT_ERR_MAX];
    struct rdt_tstring ts;

    /* 1024 characters after trimming: long enough, so the item is what is reported */
    snprintf(in, sizeof in, "  tcp:port=5005,certuser=%s%s  ", S1000, "a");
    cr_expect_eq(strlen(in), RDT_STRING_MAX + 4);
    cr_expect_eq(rdt_parse(in, RDT_EITHER, &ts, err, sizeof err), -EINVAL);
    cr_expect_str_eq(err, "unknown item \"certuser\" for tcp: tcp takes port, server, clicon, "
                          "password, hidden, ipversion, IcfEnable, Foreign");
    snprintf(in, sizeof in, "tcp:port=5005,certuser=%s%s", S1000, "ab");
    cr_expect_eq(rdt_parse(in, RDT_EITHER, &ts, err, sizeof err), -EINVAL);
    cr_expect_str_eq(err, "transport string too long: at most 1024 characters");
}
