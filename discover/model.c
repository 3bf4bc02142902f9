/* The browse list's model, free of any terminal: the rows of every host found, kept sorted by
 * host and then as each broker listed them; the hosts still asked and those that failed; a
 * kind, a filter, and a selection held by a row's stable key, so that rows arriving above it
 * never move it. */
#include "discover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct rdd_model {
    struct rdd_mrow *rows; /* every row, sorted */
    size_t nrows, cap;
    size_t *shown; /* indexes of the rows the kind and the filter let through */
    size_t nshown;
    struct rdd_mhost *hosts;
    size_t nhosts, hcap;
    enum rdb_filter kind;
    char filter[RDD_FILTER_MAX + 1];
    char selected[RDD_KEY_MAX]; /* the selected row's key ("" for none) */
};

struct rdd_model *rdd_model_new(enum rdb_filter kind)
{
    struct rdd_model *m = calloc(1, sizeof(*m));
    if (m)
        m->kind = kind;
    return m;
}

void rdd_model_free(struct rdd_model *m)
{
    if (!m)
        return;
    free(m->rows);
    free(m->shown);
    free(m->hosts);
    free(m);
}

static bool contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return n == 0;
}

/* Every word of the filter must be in one of the row's fields. */
static bool matches(const struct rdd_model *m, const struct rdd_mrow *r)
{
    if (!rdb_filter_match(m->kind, r->kind))
        return false;
    char words[RDD_FILTER_MAX + 1], *save = NULL;
    snprintf(words, sizeof(words), "%s", m->filter);
    for (char *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save))
        if (!contains(r->host, w) && !contains(rdb_kind_title(r->kind), w) &&
            !contains(r->advert, w) && !contains(r->desc, w))
            return false;
    return true;
}

/* Recomputes what is shown; the selection stays on its key, else on the nearest row before
 * where it was, else on the first. */
static void reshow(struct rdd_model *m, size_t was)
{
    m->nshown = 0;
    for (size_t i = 0; i < m->nrows; i++)
        if (matches(m, &m->rows[i]))
            m->shown[m->nshown++] = i;
    for (size_t i = 0; i < m->nshown; i++)
        if (strcmp(m->rows[m->shown[i]].key, m->selected) == 0)
            return;
    size_t at = was < m->nshown ? was : m->nshown ? m->nshown - 1 : 0;
    snprintf(m->selected, sizeof(m->selected), "%s", m->nshown ? m->rows[m->shown[at]].key : "");
}

static size_t selected_index(const struct rdd_model *m)
{
    for (size_t i = 0; i < m->nshown; i++)
        if (strcmp(m->rows[m->shown[i]].key, m->selected) == 0)
            return i;
    return 0;
}

static int grow(struct rdd_model *m, size_t more)
{
    if (m->nrows + more <= m->cap)
        return 0;
    size_t cap = (m->nrows + more) * 2;
    struct rdd_mrow *rows = realloc(m->rows, cap * sizeof(*rows));
    if (rows)
        m->rows = rows;
    size_t *shown = rows ? realloc(m->shown, cap * sizeof(*shown)) : NULL;
    if (shown)
        m->shown = shown;
    if (!rows || !shown)
        return -ENOMEM;
    m->cap = cap;
    return 0;
}

static struct rdd_mhost *host_slot(struct rdd_model *m, const struct rdd_host *h)
{
    for (size_t i = 0; i < m->nhosts; i++)
        if (m->hosts[i].port == h->port && strcmp(m->hosts[i].server, h->server) == 0)
            return &m->hosts[i];
    if (m->nhosts == m->hcap) {
        size_t cap = m->hcap ? 2 * m->hcap : 16;
        struct rdd_mhost *v = realloc(m->hosts, cap * sizeof(*v));
        if (!v)
            return NULL;
        m->hosts = v;
        m->hcap = cap;
    }
    struct rdd_mhost *s = &m->hosts[m->nhosts++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", h->name);
    snprintf(s->server, sizeof(s->server), "%s", h->server);
    s->port = h->port;
    return s;
}

/* Where a row of `host` goes: after every row of a host that sorts before it or is it. */
static size_t insert_at(const struct rdd_model *m, const char *host)
{
    size_t i = m->nrows;
    while (i > 0 && strcasecmp(m->rows[i - 1].host, host) > 0)
        i--;
    return i;
}

static void row_fill(struct rdd_mrow *r, const struct rdd_host *h, const struct rdd_row *row)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->host, sizeof(r->host), "%s", h->name);
    r->kind = row->kind;
    snprintf(r->advert, sizeof(r->advert), "%s", row->advert);
    snprintf(r->desc, sizeof(r->desc), "%s", row->desc);
    if (rdd_client_string(row, h->server, r->client, sizeof(r->client)) != 0)
        r->client[0] = '\0';
    snprintf(r->key, sizeof(r->key), "%s:%u %s %s", h->server, h->port, rdb_kind_name(row->kind),
             row->advert);
}

/* A host that turned out to be another's broker leaves the list. */
static void host_drop(struct rdd_model *m, const struct rdd_host *h)
{
    for (size_t i = 0; i < m->nhosts; i++)
        if (m->hosts[i].port == h->port && strcmp(m->hosts[i].server, h->server) == 0) {
            memmove(&m->hosts[i], &m->hosts[i + 1], (m->nhosts - i - 1) * sizeof(*m->hosts));
            m->nhosts--;
            return;
        }
}

int rdd_model_host(struct rdd_model *m, const struct rdd_host *h)
{
    if (h->duplicate) {
        host_drop(m, h);
        return 0;
    }
    struct rdd_mhost *s = host_slot(m, h);
    if (!s)
        return -ENOMEM;
    size_t was = selected_index(m);
    if (!h->done) {
        s->state = RDD_MH_ASKING;
    } else if (h->res.status != RDD_OK) {
        s->state = RDD_MH_FAILED;
        snprintf(s->err, sizeof(s->err), "%s", h->res.err);
    } else if (s->state != RDD_MH_ANSWERED) {
        s->state = RDD_MH_ANSWERED;
        if (grow(m, h->res.nrows) != 0)
            return -ENOMEM;
        size_t at = insert_at(m, h->name), k = h->res.nrows; /* one move for the host's rows */
        memmove(&m->rows[at + k], &m->rows[at], (m->nrows - at) * sizeof(*m->rows));
        for (size_t i = 0; i < k; i++)
            row_fill(&m->rows[at + i], h, &h->res.rows[i]);
        m->nrows += k;
        s->nrows += k;
    }
    reshow(m, was);
    return 0;
}

void rdd_model_clear(struct rdd_model *m)
{
    m->nrows = m->nshown = m->nhosts = 0; /* the selected key stays: the row is found again */
}

int rdd_model_set_filter(struct rdd_model *m, const char *text)
{
    if (strlen(text) > RDD_FILTER_MAX)
        return -ENOSPC;
    size_t was = selected_index(m);
    snprintf(m->filter, sizeof(m->filter), "%s", text);
    reshow(m, was);
    return 0;
}

const char *rdd_model_filter(const struct rdd_model *m)
{
    return m->filter;
}

void rdd_model_set_kind(struct rdd_model *m, enum rdb_filter kind)
{
    size_t was = selected_index(m);
    m->kind = kind;
    reshow(m, was);
}

enum rdb_filter rdd_model_kind(const struct rdd_model *m)
{
    return m->kind;
}

size_t rdd_model_count(const struct rdd_model *m)
{
    return m->nshown;
}

const struct rdd_mrow *rdd_model_row(const struct rdd_model *m, size_t i)
{
    return i < m->nshown ? &m->rows[m->shown[i]] : NULL;
}

size_t rdd_model_selected(const struct rdd_model *m)
{
    return selected_index(m);
}

const struct rdd_mrow *rdd_model_pick(const struct rdd_model *m)
{
    return m->nshown ? rdd_model_row(m, selected_index(m)) : NULL;
}

void rdd_model_move(struct rdd_model *m, long delta)
{
    if (!m->nshown)
        return;
    long i = (long)selected_index(m) + delta;
    i = i < 0 ? 0 : i >= (long)m->nshown ? (long)m->nshown - 1 : i;
    snprintf(m->selected, sizeof(m->selected), "%s", m->rows[m->shown[i]].key);
}

size_t rdd_model_hosts(const struct rdd_model *m)
{
    return m->nhosts;
}

const struct rdd_mhost *rdd_model_host_at(const struct rdd_model *m, size_t i)
{
    return i < m->nhosts ? &m->hosts[i] : NULL;
}
