/* Certificate stores: directories of PEM files, a certificate found by its subject CN, a DNS
 * subjectAltName or its SHA-1 thumbprint; the server's certificate and key, and what a client
 * trusts. */
#include "certs.h"

#include "internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define STORE_FILES_MAX 1024 /* PEM files read from one store */

int rdt_certs_dir(bool machine, char *buf, size_t len)
{
    const char *env = getenv(machine ? "RDQ_MACHINE_CERTS" : "RDQ_USER_CERTS");
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    int n;
    if (env && env[0])
        n = snprintf(buf, len, "%s", env);
    else if (machine)
        n = snprintf(buf, len, "/etc/rdq/certs");
    else if (xdg && xdg[0])
        n = snprintf(buf, len, "%s/rdq/certs", xdg);
    else
        n = snprintf(buf, len, "%s/.config/rdq/certs", home && home[0] ? home : "/");
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

bool rdt_cert_thumb_parse(const char *s, uint8_t out[RDT_THUMB_LEN])
{
    size_t n = 0;
    for (; *s; s++) {
        if (*s == ' ' || *s == ':')
            continue;
        if (!isxdigit((unsigned char)*s) || n >= 2 * RDT_THUMB_LEN)
            return false;
        unsigned v = isdigit((unsigned char)*s) ? (unsigned)(*s - '0')
                                                : (unsigned)(tolower((unsigned char)*s) - 'a' + 10);
        out[n / 2] = (uint8_t)(n % 2 ? out[n / 2] << 4 | v : v);
        n++;
    }
    return n == 2 * RDT_THUMB_LEN;
}

void rdt_cert_thumb(X509 *x, uint8_t out[RDT_THUMB_LEN], char hex[RDT_THUMB_HEX])
{
    unsigned int len = RDT_THUMB_LEN;
    memset(out, 0, RDT_THUMB_LEN);
    OSSL(X509_digest)(x, OSSL(EVP_sha1)(), out, &len);
    for (size_t i = 0; i < RDT_THUMB_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", out[i]);
}

/* Whether an ASN.1 string is `name`, whole: the same length (a NUL inside, as in
 * "rdq-srv\0.attacker.example", never matches), in any case. */
static bool asn1_is(const ASN1_STRING *s, const char *name)
{
    const char *d = (const char *)OSSL(ASN1_STRING_get0_data)(s);
    int dl = OSSL(ASN1_STRING_length)(s);
    return d && dl >= 0 && (size_t)dl == strlen(name) && strncasecmp(d, name, (size_t)dl) == 0;
}

/* A subject CN (any of them), or a DNS subjectAltName, equal to `name`. */
bool rdt_cert_has_name(X509 *x, const char *name)
{
    X509_NAME *subject = OSSL(X509_get_subject_name)(x);
    for (int i = -1; (i = OSSL(X509_NAME_get_index_by_NID)(subject, NID_commonName, i)) >= 0;)
        if (asn1_is(OSSL(X509_NAME_ENTRY_get_data)(OSSL(X509_NAME_get_entry)(subject, i)), name))
            return true;
    GENERAL_NAMES *sans = OSSL(X509_get_ext_d2i)(x, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    int n = sans ? OSSL(OPENSSL_sk_num)((const OPENSSL_STACK *)sans) : 0;
    for (int i = 0; i < n && !found; i++) {
        const GENERAL_NAME *g = OSSL(OPENSSL_sk_value)((const OPENSSL_STACK *)sans, i);
        found = g->type == GEN_DNS && asn1_is(g->d.dNSName, name);
    }
    if (sans)
        OSSL(GENERAL_NAMES_free)(sans);
    return found;
}

/* Whether `x` is what `want` names: by thumbprint when it is one, else by name. */
static bool cert_matches(X509 *x, const char *want)
{
    uint8_t thumb[RDT_THUMB_LEN], got[RDT_THUMB_LEN];
    char hex[RDT_THUMB_HEX];
    if (rdt_cert_thumb_parse(want, thumb)) {
        rdt_cert_thumb(x, got, hex);
        return memcmp(thumb, got, sizeof(got)) == 0;
    }
    return rdt_cert_has_name(x, want);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the store's *.pem files, sorted; NULL-terminated, freed by free_names(). */
static char **pem_files(const char *dir, int *err)
{
    DIR *d = opendir(dir);
    *err = d ? 0 : -errno;
    char **names = d ? calloc(STORE_FILES_MAX + 1, sizeof(*names)) : NULL;
    size_t n = 0;
    struct dirent *e;
    while (names && n < STORE_FILES_MAX && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".pem") == 0 && e->d_name[0] != '.')
            names[n] = strdup(e->d_name), n += names[n] != NULL;
    }
    if (d)
        closedir(d);
    if (names)
        qsort(names, n, sizeof(*names), by_name);
    else if (!*err)
        *err = -ENOMEM;
    return names;
}

static void free_names(char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

/* Reads every certificate of a PEM file, calling `fn` for each until it returns false. */
static int read_certs(const char *path, bool (*fn)(X509 *x, void *arg), void *arg)
{
    BIO *b = OSSL(BIO_new_file)(path, "r");
    if (!b)
        return -errno ? -errno : -EIO;
    X509 *x;
    int n = 0;
    while ((x = OSSL(PEM_read_bio_X509)(b, NULL, NULL, NULL))) {
        n++;
        bool more = fn(x, arg);
        OSSL(X509_free)(x);
        if (!more)
            break;
    }
    OSSL(ERR_clear_error)(); /* the end of the file reads as an error */
    OSSL(BIO_free)(b);
    return n;
}

struct first {
    X509 *x;
};

static bool keep_first(X509 *x, void *arg)
{
    struct first *f = arg;
    f->x = x;
    OSSL(X509_up_ref)(x);
    return false;
}

/* ---- The server's certificate ---- */

static const char *when(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;
    if (OSSL(ASN1_TIME_to_tm)(t, &tm) != 1 || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, len, "an unreadable date");
    return buf;
}

/* What makes `x` unfit to serve: not yet or no longer valid, not for server authentication. */
static int check_fit(X509 *x, const char *what, char *err, size_t errlen)
{
    char date[64];
    if (OSSL(X509_cmp_current_time)(OSSL(X509_get0_notBefore)(x)) >= 0)
        return rdt_errf(-EKEYREJECTED, err, errlen, "%s is not valid before %s", what,
                        when(OSSL(X509_get0_notBefore)(x), date, sizeof(date)));
    if (OSSL(X509_cmp_current_time)(OSSL(X509_get0_notAfter)(x)) <= 0)
        return rdt_errf(-EKEYEXPIRED, err, errlen, "%s expired on %s", what,
                        when(OSSL(X509_get0_notAfter)(x), date, sizeof(date)));
    if ((OSSL(X509_get_extension_flags)(x) & EXFLAG_XKUSAGE) &&
        !(OSSL(X509_get_extended_key_usage)(x) & XKU_SSL_SERVER))
        return rdt_errf(-EKEYREJECTED, err, errlen,
                        "%s is not for server authentication (its extended key usage leaves out "
                        "serverAuth)",
                        what);
    return 0;
}

/* Reads the private key of `pem` (a store's NAME.pem): NAME.key beside it, else in the file. */
static int read_key(const char *pem, EVP_PKEY **key, char *keypath, size_t kplen, char *err,
                    size_t errlen)
{
    snprintf(keypath, kplen, "%.*s.key", (int)(strlen(pem) - 4), pem);
    if (access(keypath, F_OK) != 0)
        snprintf(keypath, kplen, "%s", pem);
    BIO *b = OSSL(BIO_new_file)(keypath, "r");
    if (!b) {
        int e = errno ? errno : EIO;
        OSSL(ERR_clear_error)();
        return rdt_errf(-e, err, errlen, "cannot read the private key %s: %s", keypath,
                        strerror(e));
    }
    *key = OSSL(PEM_read_bio_PrivateKey)(b, NULL, NULL, NULL);
    OSSL(BIO_free)(b);
    OSSL(ERR_clear_error)();
    if (*key)
        return 0;
    return rdt_errf(-ENOKEY, err, errlen,
                    "%s has no private key (an unencrypted PEM key in %.*s.key, or in the same "
                    "file)",
                    pem, (int)(strlen(pem) - 4), pem);
}

int rdt_cert_find(const struct rdt_tstring *ts, struct rdt_cert *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    char dir[256];
    const char *store = ts->machine_store ? "the machine store" : "the user store";
    if (rdt_certs_dir(ts->machine_store, dir, sizeof(dir)) < 0)
        return rdt_errf(-ENAMETOOLONG, err, errlen, "%s: its path is too long", store);
    int rc;
    char **names = pem_files(dir, &rc);
    if (!names)
        return rdt_errf(rc, err, errlen, "certificate \"%s\": %s %s cannot be read: %s", ts->cert,
                        store, dir, strerror(-rc));
    char first[300] = "";
    int found = 0;
    for (size_t i = 0; names[i]; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct first f = {NULL};
        if (read_certs(path, keep_first, &f) <= 0 || !f.x)
            continue;
        if (cert_matches(f.x, ts->cert) && ++found == 1) {
            snprintf(first, sizeof(first), "%s", names[i]);
            snprintf(out->path, sizeof(out->path), "%s", path);
            out->x = f.x;
            continue;
        }
        if (found > 1) {
            rdt_errf(-ENOTUNIQ, err, errlen,
                     "certificate \"%s\": more than one in %s %s matches (%s and %s): name it "
                     "by its thumbprint",
                     ts->cert, store, dir, first, names[i]);
            OSSL(X509_free)(f.x);
            rdt_cert_free(out);
            free_names(names);
            return -ENOTUNIQ;
        }
        OSSL(X509_free)(f.x);
    }
    free_names(names);
    if (!found)
        return rdt_errf(-ENOENT, err, errlen,
                        "certificate \"%s\" is not in %s %s (no PEM file there holds a "
                        "certificate of that name or thumbprint)",
                        ts->cert, store, dir);
    char what[600];
    snprintf(what, sizeof(what), "certificate \"%s\" (%s)", ts->cert, out->path);
    if ((rc = check_fit(out->x, what, err, errlen)) ||
        (rc = read_key(out->path, &out->key, out->key_path, sizeof(out->key_path), err, errlen))) {
        rdt_cert_free(out);
        return rc;
    }
    if (OSSL(X509_check_private_key)(out->x, out->key) != 1) {
        OSSL(ERR_clear_error)();
        rc = rdt_errf(-EKEYREJECTED, err, errlen, "the private key %s does not match %s",
                      out->key_path, what);
        rdt_cert_free(out);
        return rc;
    }
    return 0;
}

void rdt_cert_free(struct rdt_cert *c)
{
    if (c->x)
        OSSL(X509_free)(c->x);
    if (c->key)
        OSSL(EVP_PKEY_free)(c->key);
    c->x = NULL;
    c->key = NULL;
}

/* ---- What a client trusts ---- */

static bool add_trusted(X509 *x, void *arg)
{
    OSSL(X509_STORE_add_cert)(arg, x); /* a duplicate is not an error worth stopping for */
    return true;
}

static void add_store(X509_STORE *st, bool machine)
{
    char dir[256];
    int rc;
    char **names = rdt_certs_dir(machine, dir, sizeof(dir)) == 0 ? pem_files(dir, &rc) : NULL;
    for (size_t i = 0; names && names[i]; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        read_certs(path, add_trusted, st);
    }
    free_names(names);
    OSSL(ERR_clear_error)();
}

X509_STORE *rdt_cert_trust(void)
{
    X509_STORE *st = OSSL(X509_STORE_new)();
    if (!st)
        return NULL;
    add_store(st, false);
    add_store(st, true);
    OSSL(X509_STORE_set_default_paths)(st);
    /* any certificate of the stores may end a chain, a CA's or the server's own */
    OSSL(X509_STORE_set_flags)(st, X509_V_FLAG_PARTIAL_CHAIN);
    OSSL(ERR_clear_error)();
    return st;
}
