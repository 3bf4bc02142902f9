/* Throwaway certificates for the TLS tests (see tls_certs.h). */
#include "tls_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char tc_dir[64], tc_user[96], tc_mach[96], tc_empty[96], tc_other[96], tc_nul[96];
char tc_srv_thumb[41], tc_mach_thumb[41], tc_nul_thumb[41];

#define DAY (24L * 3600)

struct spec {
    const char *cn;
    const char *san; /* NULL: none */
    const char *eku; /* NULL: none */
    long from, to;   /* seconds from now */
    bool ca;         /* a CA's certificate */
    int cn_len;      /* the CN's length, NUL bytes and all (0: up to its first NUL) */
};

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (e) {
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
}

/* A certificate for `key` as `s` says, signed by (issuer, ikey), or self-signed when NULL. */
static X509 *make(const struct spec *s, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), s->from);
    X509_gmtime_adj(X509_getm_notAfter(x), s->to);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)s->cn,
                               s->cn_len ? s->cn_len : -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509 *iss = issuer ? issuer : x;
    if (s->ca) {
        add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    if (s->san)
        add_ext(x, iss, NID_subject_alt_name, s->san);
    if (s->eku)
        add_ext(x, iss, NID_ext_key_usage, s->eku);
    X509_sign(x, ikey ? ikey : key, EVP_sha256());
    return x;
}

static bool write_pem(const char *dir, const char *name, const char *ext, X509 *x, EVP_PKEY *key,
                      mode_t mode)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "w");
    bool ok = f && (!x || PEM_write_X509(f, x)) &&
              (!key || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
    if (f)
        fclose(f);
    return ok && chmod(path, mode) == 0;
}

static void thumb(X509 *x, char out[41])
{
    unsigned char md[20];
    unsigned int len = sizeof(md);
    X509_digest(x, EVP_sha1(), md, &len);
    for (int i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* A key and a certificate for it, written as dir/name.pem and (unless `key_ext` is NULL)
 * name.<key_ext>, or both in name.pem for key_ext "pem". */
static X509 *issue(const char *dir, const char *name, const struct spec *s, X509 *ca,
                   EVP_PKEY *cakey, const char *key_ext, EVP_PKEY *key_written)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = make(s, key, ca, cakey);
    bool one = key_ext && strcmp(key_ext, "pem") == 0;
    bool ok = write_pem(dir, name, "pem", x, one ? key : NULL, one ? 0600 : 0644);
    if (ok && key_ext && !one)
        ok = write_pem(dir, name, key_ext, NULL, key_written ? key_written : key, 0600);
    EVP_PKEY_free(key);
    if (!ok)
        fprintf(stderr, "tls_certs: cannot write %s/%s\n", dir, name);
    return x;
}

bool tc_make(void)
{
    snprintf(tc_dir, sizeof(tc_dir), "/tmp/rdq-certs-XXXXXX");
    if (!mkdtemp(tc_dir))
        return false;
    chmod(tc_dir, 0755); /* servers run as nobody reach the stores too */
    snprintf(tc_user, sizeof(tc_user), "%s/user", tc_dir);
    snprintf(tc_mach, sizeof(tc_mach), "%s/mach", tc_dir);
    snprintf(tc_empty, sizeof(tc_empty), "%s/empty", tc_dir);
    snprintf(tc_other, sizeof(tc_other), "%s/other", tc_dir);
    snprintf(tc_nul, sizeof(tc_nul), "%s/nul", tc_dir);
    if (mkdir(tc_user, 0755) || mkdir(tc_mach, 0755) || mkdir(tc_empty, 0755) ||
        mkdir(tc_other, 0755) || mkdir(tc_nul, 0755))
        return false;
    setenv("RDQ_USER_CERTS", tc_user, 1);
    setenv("RDQ_MACHINE_CERTS", tc_mach, 1);

    EVP_PKEY *cakey = EVP_EC_gen("P-256");
    struct spec cas = {"rdq-test-ca", NULL, NULL, -DAY, 30 * DAY, true, 0};
    X509 *ca = make(&cas, cakey, NULL, NULL);
    bool ok = write_pem(tc_mach, "ca", "pem", ca, NULL, 0644);
    struct spec good = {
        "rdq-srv", "DNS:localhost,IP:127.0.0.1", "serverAuth", -DAY, 10 * DAY, false, 0};
    X509 *srv = issue(tc_user, "srv", &good, ca, cakey, "key", NULL);
    thumb(srv, tc_srv_thumb);
    struct spec mach = {"rdq-mach", NULL, NULL, -DAY, 10 * DAY, false, 0};
    X509 *m = issue(tc_mach, "mach", &mach, ca, cakey, "key", NULL);
    thumb(m, tc_mach_thumb);
    struct spec specs[] = {
        {"rdq-onefile", NULL, "serverAuth", -DAY, 10 * DAY, false, 0},
        {"rdq-noauth", NULL, "clientAuth", -DAY, 10 * DAY, false, 0},
        {"rdq-expired", NULL, "serverAuth", -10 * DAY, -DAY, false, 0},
        {"rdq-future", NULL, "serverAuth", DAY, 10 * DAY, false, 0},
        {"rdq-dup", NULL, NULL, -DAY, 10 * DAY, false, 0},
        {"rdq-dup", NULL, NULL, -DAY, 10 * DAY, false, 0},
        {"rdq-nokey", NULL, NULL, -DAY, 10 * DAY, false, 0},
        {"rdq-locked", NULL, NULL, -DAY, 10 * DAY, false, 0},
    };
    const char *names[] = {"onefile", "noauth", "expired", "future",
                           "dup-a",   "dup-b",  "nokey",   "locked"};
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        const char *ext = i == 0 ? "pem" : i == 6 ? NULL : "key";
        X509_free(issue(tc_user, names[i], &specs[i], ca, cakey, ext, NULL));
    }
    EVP_PKEY *stray = EVP_EC_gen("P-256");
    struct spec bad = {"rdq-badkey", NULL, NULL, -DAY, 10 * DAY, false, 0};
    X509_free(issue(tc_user, "badkey", &bad, ca, cakey, "key", stray));
    X509_free(issue(tc_other, "other", &good, NULL, NULL, "key", NULL)); /* self-signed */
    /* signed by the CA, its CN "rdq-srv" followed by a NUL and more */
    struct spec nul = {"rdq-srv\0.attacker.example", NULL, "serverAuth", -DAY, 10 * DAY, false, 25};
    X509 *xn = issue(tc_nul, "nul", &nul, ca, cakey, "key", NULL);
    thumb(xn, tc_nul_thumb);
    X509_free(xn);
    EVP_PKEY_free(stray);
    X509_free(srv);
    X509_free(m);
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return ok;
}

void tc_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tc_dir);
    if (tc_dir[0] && system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tc_dir);
}
