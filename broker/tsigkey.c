/* The key file: BIND's key "NAME" { algorithm ALG; secret "BASE64"; };. See tsigkey.h. */
#include "tsigkey.h"

#include "ldnsload.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define KEYFILE_MAX 16384

struct lex {
    const char *p;
    int line;
};

static void lex_skip(struct lex *l)
{
    for (;;) {
        while (isspace((unsigned char)*l->p))
            l->line += *l->p++ == '\n';
        if (*l->p == '#' || (l->p[0] == '/' && l->p[1] == '/')) {
            while (*l->p && *l->p != '\n')
                l->p++;
        } else if (l->p[0] == '/' && l->p[1] == '*') {
            const char *end = strstr(l->p + 2, "*/");
            for (const char *q = l->p; q < (end ? end : l->p + strlen(l->p)); q++)
                l->line += *q == '\n';
            l->p = end ? end + 2 : l->p + strlen(l->p);
        } else {
            return;
        }
    }
}

/* The next token: a word, a quoted string (without its quotes) or one of { } ;. 1, 0 at the end
 * of the file, -1 when a token is too long or a string not closed. */
static int lex_next(struct lex *l, char *tok, size_t len)
{
    lex_skip(l);
    if (!*l->p)
        return 0;
    size_t n = 0;
    if (strchr("{};", *l->p)) {
        tok[n++] = *l->p++;
    } else if (*l->p == '"') {
        for (l->p++; *l->p && *l->p != '"' && *l->p != '\n' && n + 1 < len;)
            tok[n++] = *l->p++;
        if (*l->p != '"')
            return -1;
        l->p++;
    } else {
        while (*l->p && !isspace((unsigned char)*l->p) && !strchr("{};\"", *l->p) && n + 1 < len)
            tok[n++] = *l->p++;
        if (*l->p && !isspace((unsigned char)*l->p) && !strchr("{};\"", *l->p))
            return -1;
    }
    tok[n] = '\0';
    return 1;
}

static bool lex_want(struct lex *l, const char *want)
{
    char tok[8];
    return lex_next(l, tok, sizeof(tok)) == 1 && strcmp(tok, want) == 0;
}

static const struct {
    const char *name, *wire;
} algs[] = {
    {"hmac-md5", "hmac-md5.sig-alg.reg.int."},
    {"hmac-md5.sig-alg.reg.int", "hmac-md5.sig-alg.reg.int."},
    {"hmac-sha1", "hmac-sha1."},
    {"hmac-sha224", "hmac-sha224."},
    {"hmac-sha256", "hmac-sha256."},
    {"hmac-sha384", "hmac-sha384."},
    {"hmac-sha512", "hmac-sha512."},
};

static int key_alg(struct rdb_tsigkey *k, const char *alg, char *why, size_t len)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcasecmp(alg, algs[i].name) == 0) {
            snprintf(k->alg, sizeof(k->alg), "%s", algs[i].name);
            snprintf(k->wire_alg, sizeof(k->wire_alg), "%s", algs[i].wire);
            return 0;
        }
    snprintf(why, len,
             "algorithm \"%.40s\": a TSIG key is hmac-md5, hmac-sha1, hmac-sha224, hmac-sha256, "
             "hmac-sha384 or hmac-sha512",
             alg);
    return -EINVAL;
}

/* The statements inside key "NAME" { ... }. */
static int key_body(struct lex *l, struct rdb_tsigkey *k, char *why, size_t len)
{
    char tok[512], val[KEYFILE_MAX + 1];
    int rc;
    while ((rc = lex_next(l, tok, sizeof(tok))) == 1 && strcmp(tok, "}") != 0) {
        bool alg = strcmp(tok, "algorithm") == 0, secret = strcmp(tok, "secret") == 0;
        if ((!alg && !secret) || lex_next(l, val, sizeof(val)) != 1 || !lex_want(l, ";")) {
            snprintf(why, len, "line %d: expected algorithm NAME; or secret \"BASE64\";", l->line);
            return -EINVAL;
        }
        if (alg && key_alg(k, val, why, len))
            return -EINVAL;
        if (secret && strlen(val) >= sizeof(k->secret)) {
            explicit_bzero(val, sizeof(val));
            snprintf(why, len, "line %d: the secret is longer than %zu characters", l->line,
                     sizeof(k->secret) - 1);
            return -EINVAL;
        }
        if (secret)
            snprintf(k->secret, sizeof(k->secret), "%s", val);
        explicit_bzero(val, sizeof(val));
    }
    if (rc != 1) {
        snprintf(why, len, "line %d: the key's { ... } is not closed", l->line);
        return -EINVAL;
    }
    if (!k->alg[0] || !k->secret[0]) {
        snprintf(why, len, "key \"%.60s\" has no %s", k->shown, k->alg[0] ? "secret" : "algorithm");
        return -EINVAL;
    }
    return 0;
}

static int key_parse(struct rdb_tsigkey *k, const char *text, char *why, size_t len)
{
    struct lex l = {.p = text, .line = 1};
    char tok[256];
    if (!lex_want(&l, "key") || lex_next(&l, tok, sizeof(tok)) != 1 || strchr("{};", tok[0]) ||
        !lex_want(&l, "{")) {
        snprintf(why, len,
                 "line %d: not a BIND key file (key \"NAME\" { algorithm hmac-sha256; secret "
                 "\"BASE64\"; };, as tsig-keygen writes it)",
                 l.line);
        return -EINVAL;
    }
    size_t n = strlen(tok);
    snprintf(k->shown, sizeof(k->shown), "%.*s", (int)(n && tok[n - 1] == '.' ? n - 1 : n), tok);
    snprintf(k->name, sizeof(k->name), "%s%s", tok, n && tok[n - 1] == '.' ? "" : ".");
    ldns_rdf *name = LDNS(ldns_dname_new_frm_str)(k->name);
    LDNS(ldns_rdf_deep_free)(name);
    if (!name || n >= sizeof(k->name) - 1) {
        snprintf(why, len, "the key name \"%.60s\" is not a DNS name", tok);
        return -EINVAL;
    }
    int rc = key_body(&l, k, why, len);
    if (rc)
        return rc;
    int line = l.line; /* that of the } */
    if (!lex_want(&l, ";")) {
        snprintf(why, len, "line %d: expected ; after the key's }", line);
        return -EINVAL;
    }
    lex_skip(&l);
    line = l.line;
    if ((rc = lex_next(&l, tok, sizeof(tok))) != 0) {
        snprintf(why, len, "line %d: %s", line,
                 rc == 1 && strcmp(tok, "key") == 0
                     ? "a second key: the file must hold one key"
                     : "text after the key: the file must hold one key and nothing else");
        return -EINVAL;
    }
    return 0;
}

/* Whether ldns signs with this key: the secret is base64, and ldns knows the algorithm. */
static int key_probe(struct rdb_tsigkey *k, char *why, size_t len)
{
    ldns_rdf *b64 = NULL;
    if (LDNS(ldns_str2rdf_b64)(&b64, k->secret) != LDNS_STATUS_OK || !b64) {
        snprintf(why, len, "the secret of key \"%.60s\" is not base64", k->shown);
        return -EINVAL;
    }
    explicit_bzero(LDNS(ldns_rdf_data)(b64), LDNS(ldns_rdf_size)(b64));
    LDNS(ldns_rdf_deep_free)(b64);
    ldns_pkt *p = LDNS(ldns_pkt_query_new)(LDNS(ldns_dname_new_frm_str)("probe."), LDNS_RR_TYPE_SOA,
                                           LDNS_RR_CLASS_IN, 0);
    ldns_status st =
        p ? LDNS(ldns_pkt_tsig_sign)(p, k->name, k->secret, RDB_TSIG_FUDGE, k->wire_alg, NULL)
          : LDNS_STATUS_MEM_ERR;
    LDNS(ldns_pkt_free)(p);
    if (st == LDNS_STATUS_OK)
        return 0;
    if (st == LDNS_STATUS_CRYPTO_UNKNOWN_ALGO)
        snprintf(why, len,
                 "ldns %s cannot sign with %s: make the key with tsig-keygen -a hmac-sha256 "
                 "(or hmac-sha512, hmac-sha1)",
                 LDNS_VERSION, k->alg);
    else
        snprintf(why, len, "ldns cannot sign with key \"%.60s\": %s", k->shown,
                 LDNS(ldns_get_errorstr_by_id)(st));
    return -EINVAL;
}

int rdb_tsigkey_load(struct rdb_tsigkey *k, const char *path, char *err, size_t errlen)
{
    char *text = calloc(1, KEYFILE_MAX + 1), why[300] = "";
    FILE *f = text ? fopen(path, "r") : NULL;
    int rc = -ENOMEM;
    if (!text)
        goto done;
    if (!f) {
        rc = -errno;
        snprintf(why, sizeof(why), "cannot read it: %s", strerror(errno));
        goto done;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0)
        k->mode = st.st_mode & 07777;
    size_t n = fread(text, 1, KEYFILE_MAX + 1, f);
    if (ferror(f) || n > KEYFILE_MAX || memchr(text, '\0', n)) {
        rc = -EINVAL;
        snprintf(why, sizeof(why), "%s", ferror(f) ? strerror(errno) : "not a BIND key file");
        goto done;
    }
    text[n] = '\0';
    rc = key_parse(k, text, why, sizeof(why));
    if (rc == 0)
        rc = key_probe(k, why, sizeof(why));
done:
    if (rc)
        snprintf(err, errlen, "-tsig %s: %s", path, why[0] ? why : strerror(-rc));
    if (f)
        fclose(f);
    if (text)
        explicit_bzero(text, KEYFILE_MAX + 1);
    free(text);
    return rc;
}
