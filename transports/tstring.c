/* rdq transports: transport strings (parse, validate, format) and pipe-name expansion.
 *
 * A transport string is `proto:item[,item...]`. Items are validated as they are met, so the first
 * bad one is the one reported; then the rules that tie items together, then the side, then the
 * items each protocol requires. Nothing here prints: errors go to the caller's buffer. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "transport.h"

#define ECHO_MAX 60 /* longest piece of user text quoted in a message */
_Static_assert(ECHO_MAX + 4 <= RDT_ECHO_LEN, "rdt_echo's buffer holds an echo");
#define COM_NUMBER_MAX 4096 /* highest n in COMn */

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

enum key_id {
    K_PROTO,
    K_CERTUSER,
    K_MACHUSER,
    K_PIPE,
    K_PORT,
    K_BAUD,
    K_CHANNEL,
    K_SERVER,
    K_CLICON,
    K_PASSWORD,
    K_HIDDEN,
    K_IPVERSION,
    K_ICF,
    K_FOREIGN,
    K_NONE,
};

struct parse {
    struct rdt_tstring *ts;
    enum rdt_side asked;
    char *err;
    size_t errlen;
    unsigned seen; /* bit per key_id met so far */
    int codes;     /* printf codes in pipe= */
};

struct item {
    char *key;
    char *value; /* NULL when the item has no '=' */
    bool quoted; /* the value had quotes */
    bool more;   /* a comma followed */
};

typedef int (*set_fn)(struct parse *p, enum key_id k, const char *v, bool quoted);

struct key_def {
    const char *name; /* canonical spelling in messages */
    bool flag;        /* takes no value */
    set_fn set;
};

/* A printf code of a pipe name, read after its '%'. */
struct pcode {
    bool zero;
    unsigned width;
    char conv;  /* d i u x X, or '%' for a literal percent sign */
    size_t len; /* characters after the '%' */
};

/* Output with snprintf-safe appends: `full` once something did not fit. */
struct out {
    char *buf;
    size_t len;
    size_t pos;
    bool full;
    int items;
};

static const char *const proto_names[] = {"npipe", "tcp", "com", "spipe", "ssl"};

static const enum key_id proto_keys[][10] = {
    [RDT_NPIPE] = {K_PIPE, K_SERVER, K_PASSWORD, K_HIDDEN, K_ICF, K_FOREIGN, K_NONE},
    [RDT_TCP] = {K_PORT, K_SERVER, K_CLICON, K_PASSWORD, K_HIDDEN, K_IPVERSION, K_ICF, K_FOREIGN,
                 K_NONE},
    [RDT_COM] = {K_PORT, K_BAUD, K_CHANNEL, K_PASSWORD, K_HIDDEN, K_NONE},
    [RDT_SPIPE] = {K_PROTO, K_CERTUSER, K_MACHUSER, K_PIPE, K_SERVER, K_PASSWORD, K_HIDDEN,
                   K_FOREIGN, K_NONE},
    [RDT_SSL] = {K_PROTO, K_CERTUSER, K_MACHUSER, K_PORT, K_SERVER, K_CLICON, K_PASSWORD, K_HIDDEN,
                 K_FOREIGN, K_NONE},
};

static const struct {
    const char *name;
    int tls_min;
} tls_protos[] = {{"tls1", 12}, {"tls1.2", 12}, {"tls1.3", 13}};

static const char *const obsolete_protos[] = {"ssl2", "ssl3", "pct1"};

/* ---- Small helpers -------------------------------------------------------------------------- */

static bool has(unsigned seen, enum key_id k)
{
    return seen & (1u << k);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_cntrl(char c)
{
    return (unsigned char)c < 0x20 || c == 0x7f;
}

static bool has_cntrl(const char *s)
{
    for (; *s; s++)
        if (is_cntrl(*s))
            return true;
    return false;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Reads decimal digits (at least one) into *out, refusing values above max. */
static bool read_num(const char *s, const char **end, unsigned long max, unsigned long *out)
{
    const char *d = s;
    unsigned long v = 0;

    for (; *d >= '0' && *d <= '9'; d++) {
        v = v * 10 + (unsigned long)(*d - '0');
        if (v > max)
            return false;
    }
    *end = d;
    *out = v;
    return d > s;
}

/* Reads one whole decimal value in min..max. */
static bool read_whole(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    const char *end;

    return read_num(s, &end, max, out) && !*end && *out >= min;
}

static void wipe(void *p, size_t n)
{
    volatile unsigned char *b = p;

    while (n--)
        *b++ = 0;
}

/* Skips a value from s[i] to its unquoted comma (or n). */
static size_t skip_value(const char *s, size_t i, size_t n)
{
    bool inq = false;

    for (; i < n && (inq || s[i] != ','); i++)
        if (s[i] == '"')
            inq = !inq;
    return i;
}

/* Copies n bytes of s for a message: control characters as '?', any password value as '*',
 * at most ECHO_MAX characters and then "...". `dst` holds ECHO_MAX + 4 bytes. */
static const char *echo(char *dst, const char *s, size_t n)
{
    char tmp[RDT_STRING_MAX + 1];
    size_t i = 0, w = 0;

    if (n > RDT_STRING_MAX)
        n = RDT_STRING_MAX;
    while (i < n) {
        if (n - i > 9 && strncasecmp(s + i, "password=", 9) == 0 && s[i + 9] != ',') {
            memcpy(tmp + w, s + i, 9);
            w += 9;
            tmp[w++] = '*';
            i = skip_value(s, i + 9, n);
            continue;
        }
        tmp[w++] = is_cntrl(s[i]) ? '?' : s[i];
        i++;
    }
    tmp[w] = '\0';
    snprintf(dst, ECHO_MAX + 4, "%.*s%s", ECHO_MAX, tmp, w > ECHO_MAX ? "..." : "");
    wipe(tmp, sizeof tmp);
    return dst;
}

const char *rdt_echo(const char *s, char buf[RDT_ECHO_LEN])
{
    return echo(buf, s, strlen(s));
}

PRINTF_LIKE(2, 3) static int fail(struct parse *p, const char *fmt, ...)
{
    va_list ap;

    if (p->err && p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Reads the printf code after a '%': "%" (a literal percent sign) or [0-9]*[diuxX]. */
static bool read_code(const char *s, struct pcode *c)
{
    size_t i = 0;

    memset(c, 0, sizeof *c);
    if (s[0] == '%') {
        c->conv = '%';
        c->len = 1;
        return true;
    }
    c->zero = s[0] == '0';
    for (; s[i] >= '0' && s[i] <= '9'; i++)
        if (c->width < 100000)
            c->width = c->width * 10 + (unsigned)(s[i] - '0');
    if (!s[i] || !strchr("diuxX", s[i]))
        return false;
    c->conv = s[i];
    c->len = i + 1;
    return true;
}

/* Counts the printf codes of a pipe name; -1 when a '%' starts none. */
static int count_codes(const char *s)
{
    struct pcode c;
    int n = 0;

    for (; (s = strchr(s, '%')); s += 1 + c.len) {
        if (!read_code(s + 1, &c))
            return -1;
        if (c.conv != '%')
            n++;
    }
    return n;
}

/* Normalises a host: drops a leading "\\" and IPv6 brackets. -1 if it is no host. */
static int host_value(char *dst, const char *v)
{
    size_t i, n;

    if (v[0] == '\\' && v[1] == '\\')
        v += 2;
    n = strlen(v);
    if (n >= 2 && v[0] == '[' && v[n - 1] == ']') {
        v++;
        n -= 2;
    }
    if (n < 1 || n > RDT_HOST_MAX)
        return -1;
    for (i = 0; i < n; i++)
        if (!is_alnum(v[i]) && !strchr(".-_:%", v[i]))
            return -1;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

/* ---- Item values ---------------------------------------------------------------------------- */

static int set_pipe(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    (void)k;
    if (strlen(v) > RDT_PIPE_MAX)
        return fail(p, "pipe: at most %d characters", RDT_PIPE_MAX);
    if (quoted || strpbrk(v, " \"'/") || has_cntrl(v) || !strcmp(v, ".") || !strcmp(v, ".."))
        return fail(p, "pipe: no spaces, quotes or slashes in a pipe name");
    p->codes = count_codes(v);
    if (p->codes < 0)
        return fail(p, "pipe: \"%%\" must start a printf code such as %%d or %%x "
                       "(or write %%%% for a percent sign)");
    if (p->codes > 2)
        return fail(p, "pipe: at most two printf codes (process id, then thread id)");
    strcpy(p->ts->pipe, v);
    return 0;
}

static int set_host(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    char *dst = k == K_SERVER ? p->ts->server : p->ts->clicon;
    char e[ECHO_MAX + 4];

    (void)quoted;
    if (host_value(dst, v) < 0)
        return fail(p, "%s: \"%s\" is not a host name or IP address",
                    k == K_SERVER ? "server" : "clicon", echo(e, v, strlen(v)));
    return 0;
}

static int set_net_port(struct parse *p, const char *v)
{
    unsigned long lo, hi;
    const char *end;

    if (!read_num(v, &end, 65535, &lo) || lo == 0)
        return fail(p, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60");
    hi = lo;
    if (*end == ':' && (!read_num(end + 1, &end, 65535, &hi) || hi == 0))
        return fail(p, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60");
    if (*end)
        return fail(p, "port: expected a port 1 to 65535 or a range lo:hi such as 51:60");
    if (lo > hi)
        return fail(p, "port: range %lu:%lu runs backwards: write the low port first", lo, hi);
    p->ts->port_lo = (uint16_t)lo;
    p->ts->port_hi = (uint16_t)hi;
    return 0;
}

static bool com_path_ok(const char *v)
{
    size_t n = strlen(v);

    if (n <= 5 || n > RDT_COMPORT_MAX || strpbrk(v, " ,\"'") || has_cntrl(v))
        return false;
    return !strstr(v, "/../") && strcmp(v + n - 3, "/..") != 0;
}

static int set_com_port(struct parse *p, const char *v)
{
    struct rdt_tstring *ts = p->ts;
    unsigned long n;

    if (strncmp(v, "/dev/", 5) == 0 && com_path_ok(v)) {
        strcpy(ts->com_port, v);
        strcpy(ts->com_device, v);
        return 0;
    }
    if (strncasecmp(v, "com", 3) == 0)
        v += 3;
    if (!read_whole(v, 1, COM_NUMBER_MAX, &n))
        return fail(p, "port: expected COMn, n, or a device path such as /dev/ttyUSB0");
    snprintf(ts->com_port, sizeof ts->com_port, "COM%lu", n);
    snprintf(ts->com_device, sizeof ts->com_device, "/dev/ttyS%lu", n - 1);
    return 0;
}

static int set_port(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    (void)k;
    (void)quoted;
    return p->ts->proto == RDT_COM ? set_com_port(p, v) : set_net_port(p, v);
}

static int set_baud(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    unsigned long n;

    (void)k;
    (void)quoted;
    if (!read_whole(v, 1, 4000000, &n))
        return fail(p, "baud: expected a rate such as 9600 or 115200 (1 to 4000000)");
    p->ts->baud = (uint32_t)n;
    return 0;
}

static int set_channel(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    unsigned long n;

    (void)k;
    (void)quoted;
    if (!read_whole(v, 0, 254, &n))
        return fail(p, "channel: 0 to 254");
    p->ts->channel = (int)n;
    return 0;
}

static int set_proto(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    size_t i;

    (void)k;
    (void)quoted;
    for (i = 0; i < sizeof tls_protos / sizeof tls_protos[0]; i++) {
        if (strcasecmp(v, tls_protos[i].name) == 0) {
            p->ts->tls_min = tls_protos[i].tls_min;
            strcpy(p->ts->proto_name, tls_protos[i].name);
            return 0;
        }
    }
    for (i = 0; i < sizeof obsolete_protos / sizeof obsolete_protos[0]; i++)
        if (strcasecmp(v, obsolete_protos[i]) == 0)
            return fail(p, "%s is obsolete and insecure: use proto=tls1", obsolete_protos[i]);
    return fail(p, "proto: use tls1 (TLS 1.2 or later), tls1.2 or tls1.3");
}

static int set_cert(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    (void)quoted;
    if (strlen(v) > RDT_CERT_MAX || has_cntrl(v))
        return fail(p, "%s: a certificate name or thumbprint, at most %d characters",
                    k == K_MACHUSER ? "machuser" : "certuser", RDT_CERT_MAX);
    strcpy(p->ts->cert, v);
    p->ts->machine_store = k == K_MACHUSER;
    return 0;
}

static int set_password(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    size_t i, n = strlen(v);

    (void)k;
    (void)quoted;
    if (strcmp(v, "*") == 0) {
        p->ts->password_ask = true;
        return 0;
    }
    if (n > RDT_PASSWORD_MAX)
        return fail(p, "password: at most %d letters or digits", RDT_PASSWORD_MAX);
    for (i = 0; i < n; i++)
        if (!is_alnum(v[i]))
            return fail(p, "password: at most %d letters or digits", RDT_PASSWORD_MAX);
    memcpy(p->ts->password, v, n + 1);
    return 0;
}

static int set_flag(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    (void)v;
    (void)quoted;
    if (k == K_HIDDEN)
        p->ts->hidden = true;
    else if (k == K_FOREIGN)
        p->ts->foreign = true;
    else
        p->ts->icf_enable = true;
    return 0;
}

static int set_ipversion(struct parse *p, enum key_id k, const char *v, bool quoted)
{
    (void)k;
    (void)quoted;
    if (strcmp(v, "6") != 0)
        return fail(p, "ipversion: only ipversion=6 is accepted (leave it out for the default)");
    p->ts->ipv6 = true;
    return 0;
}

static const struct key_def keys[K_NONE] = {
    [K_PROTO] = {"proto", false, set_proto},
    [K_CERTUSER] = {"certuser", false, set_cert},
    [K_MACHUSER] = {"machuser", false, set_cert},
    [K_PIPE] = {"pipe", false, set_pipe},
    [K_PORT] = {"port", false, set_port},
    [K_BAUD] = {"baud", false, set_baud},
    [K_CHANNEL] = {"channel", false, set_channel},
    [K_SERVER] = {"server", false, set_host},
    [K_CLICON] = {"clicon", false, set_host},
    [K_PASSWORD] = {"password", false, set_password},
    [K_HIDDEN] = {"hidden", true, set_flag},
    [K_IPVERSION] = {"ipversion", false, set_ipversion},
    [K_ICF] = {"IcfEnable", true, set_flag},
    [K_FOREIGN] = {"Foreign", true, set_flag},
};

/* ---- Items ---------------------------------------------------------------------------------- */

static enum key_id find_key(const char *name)
{
    int k;

    for (k = 0; k < K_NONE; k++)
        if (strcasecmp(name, keys[k].name) == 0)
            return (enum key_id)k;
    return K_NONE;
}

static bool proto_takes(enum rdt_proto proto, enum key_id k)
{
    const enum key_id *l;

    for (l = proto_keys[proto]; *l != K_NONE; l++)
        if (*l == k)
            return true;
    return false;
}

static int unknown_item(struct parse *p, const char *key)
{
    const char *name = proto_names[p->ts->proto];
    const enum key_id *l;
    char list[128] = "", e[ECHO_MAX + 4];
    size_t n = 0;

    for (l = proto_keys[p->ts->proto]; *l != K_NONE; l++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", keys[*l].name);
    return fail(p, "unknown item \"%s\" for %s: %s takes %s", echo(e, key, strlen(key)), name, name,
                list);
}

/* Splits the item at *cur into key and value (quotes removed in place); moves *cur on. */
static int split_item(struct parse *p, char **cur, struct item *it)
{
    char *s = *cur, *w;
    char e[ECHO_MAX + 4];
    bool inq = false;

    memset(it, 0, sizeof *it);
    it->key = s;
    s += strcspn(s, "=,");
    it->more = *s == ',';
    if (*s != '=') {
        *cur = *s ? s + 1 : s;
        *s = '\0';
        return 0;
    }
    *s++ = '\0';
    for (it->value = w = s; *s && (inq || *s != ','); s++) {
        if (*s == '"') {
            inq = !inq;
            it->quoted = true;
        } else {
            *w++ = *s;
        }
    }
    if (inq)
        return fail(p, "unterminated quote in item \"%s\"", echo(e, it->key, strlen(it->key)));
    it->more = *s == ',';
    *cur = *s ? s + 1 : s;
    *w = '\0';
    return 0;
}

static int apply_item(struct parse *p, const struct item *it)
{
    enum rdt_proto proto = p->ts->proto;
    enum key_id k;

    if (!it->key[0] && !it->value)
        return fail(p, "empty item: remove the extra comma");
    k = find_key(it->key);
    if (k == K_ICF && proto != RDT_TCP && proto != RDT_NPIPE)
        return fail(p, "IcfEnable is for tcp and npipe only");
    if (k == K_FOREIGN && proto == RDT_COM)
        return fail(p, "Foreign is for tcp, ssl, npipe and spipe: a com channel is rdq's own "
                       "framing of the line, which no foreign server speaks");
    if (k == K_NONE || !proto_takes(proto, k))
        return unknown_item(p, it->key);
    if (has(p->seen, k))
        return fail(p, "%s: given twice", keys[k].name);
    p->seen |= 1u << k;
    if (keys[k].flag && it->value)
        return fail(p, "%s takes no value", keys[k].name);
    if (!keys[k].flag && (!it->value || !it->value[0]))
        return fail(p, "%s needs a value: %s=...", keys[k].name, keys[k].name);
    return keys[k].set(p, k, it->value, it->quoted);
}

static int parse_items(struct parse *p, char *cur)
{
    struct item it;
    int rc;

    if (!*cur)
        return 0;
    do {
        rc = split_item(p, &cur, &it);
        if (rc == 0)
            rc = apply_item(p, &it);
        if (rc)
            return rc;
    } while (it.more);
    return 0;
}

/* ---- Whole strings -------------------------------------------------------------------------- */

static int check_combos(struct parse *p)
{
    unsigned s = p->seen;

    if (has(s, K_SERVER) && has(s, K_CLICON))
        return fail(p, "server and clicon cannot be used together: use server= to reach a "
                       "server, clicon= for a reverse connection");
    if (has(s, K_CERTUSER) && has(s, K_MACHUSER))
        return fail(p, "certuser and machuser cannot be used together: name the certificate once");
    if (has(s, K_CLICON) && has(s, K_HIDDEN))
        return fail(p, "clicon servers cannot be hidden");
    if (has(s, K_CLICON) && has(s, K_ICF))
        return fail(p, "IcfEnable cannot be used with clicon");
    if (has(s, K_FOREIGN) && has(s, K_PASSWORD))
        return fail(p, "Foreign cannot be used with password: a foreign server checks no rdq "
                       "password (it is reached as it is); leave the password out");
    if (has(s, K_FOREIGN) && has(s, K_CLICON))
        return fail(p, "Foreign cannot be used with clicon: a foreign server dials no client; "
                       "use server=");
    return 0;
}

/* The side the string describes: the one asked for, else what its items make it. */
static enum rdt_side derive_side(const struct parse *p)
{
    const struct rdt_tstring *ts = p->ts;

    if (p->asked != RDT_EITHER)
        return p->asked;
    if (ts->server[0] || ts->foreign || (ts->clicon[0] && ts->port_lo != ts->port_hi))
        return RDT_CLIENT;
    if (ts->hidden || ts->icf_enable)
        return RDT_SERVER;
    if (ts->clicon[0] || ts->proto == RDT_COM)
        return ts->password_ask ? RDT_CLIENT : RDT_EITHER;
    return RDT_SERVER;
}

static int check_side(struct parse *p, enum rdt_side side)
{
    const struct rdt_tstring *ts = p->ts;

    if (side == RDT_SERVER && ts->server[0])
        return fail(p, "server= is for clients: a server string names no server");
    if (side == RDT_SERVER && ts->clicon[0] && ts->port_lo != ts->port_hi)
        return fail(p, "port: a clicon server gives one port, not a range "
                       "(the client may give a range)");
    if (side == RDT_CLIENT && ts->hidden)
        return fail(p, "hidden is for servers: a client string does not take it");
    if (side == RDT_CLIENT && ts->icf_enable)
        return fail(p, "IcfEnable is for servers: a client string does not take it");
    if (side == RDT_CLIENT && p->codes > 0)
        return fail(p, "pipe: a client names the pipe as the server lists it, "
                       "without printf codes");
    if (side == RDT_SERVER && ts->password_ask)
        return fail(p, "password: a server sets the password itself; * is for clients");
    if (side == RDT_SERVER && ts->foreign)
        return fail(p, "Foreign is for clients: it says that the server speaks its own protocol, "
                       "and an rdq server speaks rdq's (make a foreign server discoverable with "
                       "rdsrv -announce)");
    return 0;
}

/* The first required item missing for `side`, or NULL. */
static const char *missing(const struct parse *p, enum rdt_side side)
{
    enum rdt_proto proto = p->ts->proto;
    bool tls = proto == RDT_SSL || proto == RDT_SPIPE;
    bool net = proto == RDT_TCP || proto == RDT_SSL;

    if (tls && !has(p->seen, K_PROTO))
        return "proto=tls1";
    if (tls && !has(p->seen, K_CERTUSER) && !has(p->seen, K_MACHUSER))
        return "certuser=Cert or machuser=Cert";
    if ((proto == RDT_NPIPE || proto == RDT_SPIPE) && !has(p->seen, K_PIPE))
        return "pipe=Name";
    if (net && !has(p->seen, K_PORT))
        return "port=Socket (a port such as 5005 or a range such as 51:60)";
    if (proto == RDT_COM && !has(p->seen, K_PORT))
        return "port=COMPort (COM2, 2 or /dev/ttyUSB0)";
    if (proto == RDT_COM && !has(p->seen, K_BAUD))
        return "baud=BaudRate";
    if (proto == RDT_COM && !has(p->seen, K_CHANNEL))
        return "channel=COMChannel (0 to 254)";
    if (side != RDT_CLIENT || proto == RDT_COM || has(p->seen, K_SERVER))
        return NULL;
    if (!net || p->ts->foreign)
        return "server=Host";
    return has(p->seen, K_CLICON) ? NULL : "server=Host or clicon=Host";
}

static int find_proto(struct parse *p, const char *s, size_t n)
{
    char e[ECHO_MAX + 4];
    size_t i;

    for (i = 0; i < sizeof proto_names / sizeof proto_names[0]; i++) {
        if (strlen(proto_names[i]) == n && strncasecmp(s, proto_names[i], n) == 0) {
            p->ts->proto = (enum rdt_proto)i;
            return 0;
        }
    }
    return fail(p, "unknown protocol \"%s\": use npipe, tcp, com, spipe or ssl", echo(e, s, n));
}

/* Trims the string into buf, then reads the protocol; *items is what follows the colon. */
static int read_head(struct parse *p, const char *s, char *buf, char **items)
{
    char e[ECHO_MAX + 4];
    const char *colon;
    size_t n;

    while (is_blank(*s))
        s++;
    n = strlen(s);
    while (n && is_blank(s[n - 1]))
        n--;
    if (n == 0)
        return fail(p, "empty transport string: expected proto:item[,item...], "
                       "e.g. tcp:port=5005");
    if (n > RDT_STRING_MAX)
        return fail(p, "transport string too long: at most %d characters", RDT_STRING_MAX);
    colon = memchr(s, ':', n);
    if (!colon)
        return fail(p,
                    "\"%s\": expected proto:item[,item...] with proto npipe, tcp, com, spipe "
                    "or ssl",
                    echo(e, s, n));
    memcpy(buf, s, n);
    buf[n] = '\0';
    *items = buf + (colon - s) + 1;
    return find_proto(p, s, (size_t)(colon - s));
}

static int parse_string(struct parse *p, const char *s, char *buf)
{
    enum rdt_side side;
    const char *need;
    char *items = NULL;
    int rc;

    rc = read_head(p, s, buf, &items);
    if (rc == 0)
        rc = parse_items(p, items);
    if (rc == 0)
        rc = check_combos(p);
    if (rc)
        return rc;
    side = derive_side(p);
    rc = check_side(p, side);
    if (rc)
        return rc;
    need = missing(p, side);
    if (need)
        return fail(p, "%s needs %s", proto_names[p->ts->proto], need);
    p->ts->side = side;
    return 0;
}

int rdt_parse(const char *s, enum rdt_side side, struct rdt_tstring *out, char *err, size_t errlen)
{
    struct parse p = {.ts = out, .asked = side, .err = err, .errlen = errlen};
    char buf[RDT_STRING_MAX + 1];
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!s || !out || (unsigned)side > RDT_CLIENT)
        return fail(&p, "bad arguments");
    memset(out, 0, sizeof *out);
    rc = parse_string(&p, s, buf);
    if (rc)
        wipe(out, sizeof *out);
    wipe(buf, sizeof buf);
    return rc;
}

int rdt_parse_advert(const char *advert, struct rdt_tstring *out, char *err, size_t errlen)
{
    char client[RDT_STRING_MAX + 32];
    snprintf(client, sizeof(client),
             strncasecmp(advert, "com:", 4) == 0 ? "%s" : "%s,Server=localhost", advert);
    return rdt_parse(client, RDT_CLIENT, out, err, errlen);
}

bool rdt_string_foreign(const char *s)
{
    struct parse p = {0};
    char buf[RDT_STRING_MAX + 1], *cur;
    struct item it;
    bool found = false;

    if (!s || strlen(s) > RDT_STRING_MAX)
        return false;
    strcpy(buf, s);
    cur = strchr(buf, ':');
    if (cur && *++cur) {
        do {
            if (split_item(&p, &cur, &it) != 0)
                break;
            found = !it.value && find_key(it.key) == K_FOREIGN;
        } while (!found && it.more);
    }
    wipe(buf, sizeof buf);
    return found;
}

/* ---- Formatting ----------------------------------------------------------------------------- */

static void vput(struct out *o, const char *fmt, va_list ap)
{
    size_t room = o->len - o->pos;
    int n;

    if (o->full)
        return;
    n = vsnprintf(o->buf + o->pos, room, fmt, ap);
    if (n < 0 || (size_t)n >= room)
        o->full = true;
    else
        o->pos += (size_t)n;
}

PRINTF_LIKE(2, 3) static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vput(o, fmt, ap);
    va_end(ap);
}

/* Appends one item, with its comma. */
PRINTF_LIKE(2, 3) static void item(struct out *o, const char *fmt, ...)
{
    va_list ap;

    if (o->items++)
        put(o, ",");
    va_start(ap, fmt);
    vput(o, fmt, ap);
    va_end(ap);
}

static void put_port(struct out *o, const struct rdt_tstring *ts, uint16_t bound)
{
    unsigned lo = bound ? bound : ts->port_lo, hi = ts->port_hi;

    if (lo == hi)
        item(o, "Port=%u", lo);
    else
        item(o, "Port=%u:%u", lo, hi);
}

static void put_cert(struct out *o, const struct rdt_tstring *ts)
{
    const char *key = ts->machine_store ? "Machuser" : "Certuser";

    if (strpbrk(ts->cert, " ,\""))
        item(o, "%s=\"%s\"", key, ts->cert);
    else
        item(o, "%s=%s", key, ts->cert);
}

/* The items every form shows: protocol settings, the endpoint, the password. */
static void put_main(struct out *o, const struct rdt_tstring *ts, uint16_t bound, bool canon)
{
    if (ts->proto_name[0])
        item(o, "Proto=%s", ts->proto_name);
    if (ts->cert[0])
        put_cert(o, ts);
    if (ts->pipe[0])
        item(o, "Pipe=%s", ts->pipe);
    if (ts->proto == RDT_COM && ts->com_port[0])
        item(o, "Port=%s", ts->com_port);
    if (ts->proto != RDT_COM && ts->port_lo)
        put_port(o, ts, bound);
    if (ts->proto == RDT_COM && ts->baud)
        item(o, "Baud=%u", (unsigned)ts->baud);
    if (ts->proto == RDT_COM)
        item(o, "Channel=%d", ts->channel);
    if (canon && ts->hidden)
        item(o, "Hidden");
    if (ts->password[0] || ts->password_ask)
        item(o, "Password=*");
    if (ts->ipv6)
        item(o, "Ipversion=6");
    if (canon && ts->icf_enable)
        item(o, "IcfEnable");
    if (ts->foreign)
        item(o, "Foreign");
}

static void put_own_host(struct out *o, const struct rdt_tstring *ts)
{
    if (ts->server[0])
        item(o, "Server=%s", ts->server);
    else if (ts->clicon[0])
        item(o, "Clicon=%s", ts->clicon);
}

static bool bound_ok(const struct rdt_tstring *ts, uint16_t bound)
{
    if (!bound || (ts->proto != RDT_TCP && ts->proto != RDT_SSL))
        return true;
    return bound >= ts->port_lo && bound <= ts->port_hi;
}

int rdt_format(const struct rdt_tstring *ts, enum rdt_form form, const char *host,
               uint16_t bound_port, char *buf, size_t len)
{
    struct out o = {.buf = buf, .len = len};
    char h[RDT_HOST_MAX + 1];

    if (!ts || !buf || (unsigned)ts->proto > RDT_SSL || (unsigned)form > RDT_FORM_CLIENT ||
        !bound_ok(ts, bound_port))
        return -EINVAL;
    if (form == RDT_FORM_CLIENT && host && host_value(h, host) < 0)
        return -EINVAL;
    if (len == 0)
        return -ENOSPC;
    if (ts->proto != RDT_TCP && ts->proto != RDT_SSL)
        bound_port = 0;
    put(&o, "%s:", proto_names[ts->proto]);
    put_main(&o, ts, bound_port, form == RDT_FORM_CANON);
    if (form == RDT_FORM_CANON || (form == RDT_FORM_CLIENT && !host))
        put_own_host(&o, ts);
    else if (form == RDT_FORM_CLIENT && ts->proto != RDT_COM)
        item(&o, "Server=%s", h);
    if (o.full) {
        buf[0] = '\0';
        return -ENOSPC;
    }
    return (int)o.pos;
}

/* ---- Pipe names ----------------------------------------------------------------------------- */

static void put_code(struct out *o, const struct pcode *c, pid_t v)
{
    int w = (int)c->width;

    switch (c->conv) {
    case 'x':
        put(o, c->zero ? "%0*x" : "%*x", w, (unsigned)v);
        break;
    case 'X':
        put(o, c->zero ? "%0*X" : "%*X", w, (unsigned)v);
        break;
    case 'u':
        put(o, c->zero ? "%0*u" : "%*u", w, (unsigned)v);
        break;
    default:
        put(o, c->zero ? "%0*d" : "%*d", w, (int)v);
        break;
    }
}

int rdt_pipe_expand(const char *name, pid_t pid, pid_t tid, char *buf, size_t len)
{
    struct out o = {.buf = buf, .len = len};
    const char *pct;
    struct pcode c;
    int n = 0;

    if (!name || !buf)
        return -EINVAL;
    if (len == 0)
        return -ENOSPC;
    buf[0] = '\0';
    for (; (pct = strchr(name, '%')); name = pct + 1 + c.len) {
        put(&o, "%.*s", (int)(pct - name), name);
        if (!read_code(pct + 1, &c) || (c.conv != '%' && n >= 2)) {
            buf[0] = '\0';
            return -EINVAL;
        }
        if (c.conv == '%')
            put(&o, "%%");
        else
            put_code(&o, &c, n++ ? tid : pid);
    }
    put(&o, "%s", name);
    if (o.full) {
        buf[0] = '\0';
        return -ENOSPC;
    }
    return (int)o.pos;
}

/* ---- Names ---------------------------------------------------------------------------------- */

const char *rdt_proto_name(enum rdt_proto p)
{
    return (unsigned)p <= RDT_SSL ? proto_names[p] : "unknown";
}

const char *rdt_side_name(enum rdt_side s)
{
    static const char *const names[] = {"server or client", "server", "client"};

    return (unsigned)s <= RDT_CLIENT ? names[s] : "unknown";
}
