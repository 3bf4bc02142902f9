/* The browse list's model on its own: rows arriving in any order, the kind and the filter, and a
 * selection that stays on its row. */
#include "discover.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static struct rdd_row rows_a[] = {
    {RDB_PROCESS, "tcp:Port=5005", "rdsrv"},
    {RDB_DEBUGGER, "tcp:Port=53:60,Password=*", "gdb on ./app"},
};
static struct rdd_row rows_b[] = {
    {RDB_PROCESS, "npipe:Pipe=dbg42", "rdsrv"},
    {RDB_KD, "com:Port=/dev/ttyS0,Baud=115200,Channel=0", "kgdb link"},
};

/* A host as the browse reports it: asking (rows NULL), answered or failed. */
static struct rdd_host host(const char *name, struct rdd_row *rows, size_t n, bool fail)
{
    struct rdd_host h = {.port = 7263, .source = RDD_SRC_HOST};
    snprintf(h.name, sizeof(h.name), "%s", name);
    snprintf(h.server, sizeof(h.server), "%s", name);
    h.done = rows || fail;
    h.res.status = fail ? RDD_UNREACHABLE : RDD_OK;
    if (fail)
        snprintf(h.res.err, sizeof(h.res.err), "%s: no answer", name);
    h.res.rows = rows;
    h.res.nrows = n;
    return h;
}

static const char *advert_at(const struct rdd_model *m, size_t i)
{
    const struct rdd_mrow *r = rdd_model_row(m, i);
    return r ? r->advert : "(none)";
}

Test(model, rows_sorted_by_host_whatever_order_they_come_in)
{
    struct rdd_model *m = rdd_model_new(RDB_FILTER_ALL);
    struct rdd_host b = host("bravo", rows_b, 2, false), a = host("alpha", rows_a, 2, false);
    cr_assert_eq(rdd_model_host(m, &b), 0);
    cr_assert_eq(rdd_model_host(m, &a), 0);
    cr_assert_eq(rdd_model_count(m), 4);
    cr_expect_str_eq(rdd_model_row(m, 0)->host, "alpha");
    cr_expect_str_eq(advert_at(m, 0), "tcp:Port=5005");
    cr_expect_str_eq(advert_at(m, 1), "tcp:Port=53:60,Password=*");
    cr_expect_str_eq(rdd_model_row(m, 2)->host, "bravo");
    cr_expect_str_eq(rdd_model_row(m, 1)->client, "tcp:Port=53:60,Password=*,Server=alpha");
    /* the same host reported answered twice adds nothing */
    cr_expect_eq(rdd_model_host(m, &a), 0);
    cr_expect_eq(rdd_model_count(m), 4);
    rdd_model_free(m);
}

Test(model, selection_stays_on_its_row_when_rows_arrive_above)
{
    struct rdd_model *m = rdd_model_new(RDB_FILTER_ALL);
    struct rdd_host b = host("bravo", rows_b, 2, false), a = host("alpha", rows_a, 2, false);
    rdd_model_host(m, &b);
    rdd_model_move(m, 1);
    cr_assert_str_eq(rdd_model_pick(m)->advert, rows_b[1].advert);
    rdd_model_host(m, &a); /* two rows above it */
    cr_expect_eq(rdd_model_selected(m), 3);
    cr_expect_str_eq(rdd_model_pick(m)->advert, rows_b[1].advert);
    rdd_model_move(m, -100);
    cr_expect_eq(rdd_model_selected(m), 0);
    rdd_model_move(m, 100);
    cr_expect_eq(rdd_model_selected(m), 3);
    rdd_model_free(m);
}

Test(model, filter_and_kind)
{
    struct rdd_model *m = rdd_model_new(RDB_FILTER_ALL);
    struct rdd_host a = host("alpha", rows_a, 2, false), b = host("bravo", rows_b, 2, false);
    rdd_model_host(m, &a);
    rdd_model_host(m, &b);
    cr_expect_eq(rdd_model_set_filter(m, "RDSRV"), 0);
    cr_expect_eq(rdd_model_count(m), 2);
    cr_expect_eq(rdd_model_set_filter(m, "rdsrv bravo"), 0); /* every word */
    cr_assert_eq(rdd_model_count(m), 1);
    cr_expect_str_eq(advert_at(m, 0), "npipe:Pipe=dbg42");
    cr_expect_eq(rdd_model_set_filter(m, "kernel"), 0); /* the type's title counts */
    cr_expect_eq(rdd_model_count(m), 1);
    cr_expect_eq(rdd_model_set_filter(m, "nothing like it"), 0);
    cr_expect_eq(rdd_model_count(m), 0);
    cr_expect_null(rdd_model_pick(m));
    rdd_model_set_filter(m, "");
    rdd_model_set_kind(m, RDB_FILTER_DEBUGGER);
    cr_assert_eq(rdd_model_count(m), 1);
    cr_expect_str_eq(advert_at(m, 0), "tcp:Port=53:60,Password=*");
    rdd_model_set_kind(m, RDB_FILTER_REMOTE); /* process and KD servers */
    cr_expect_eq(rdd_model_count(m), 3);
    char long_filter[RDD_FILTER_MAX + 8];
    memset(long_filter, 'x', sizeof(long_filter) - 1);
    long_filter[sizeof(long_filter) - 1] = '\0';
    cr_expect_neq(rdd_model_set_filter(m, long_filter), 0);
    rdd_model_free(m);
}

Test(model, a_filtered_away_selection_passes_to_a_neighbour_and_comes_back)
{
    struct rdd_model *m = rdd_model_new(RDB_FILTER_ALL);
    struct rdd_host a = host("alpha", rows_a, 2, false), b = host("bravo", rows_b, 2, false);
    rdd_model_host(m, &a);
    rdd_model_host(m, &b);
    rdd_model_move(m, 2); /* bravo's pipe */
    rdd_model_set_filter(m, "tcp");
    cr_assert_eq(rdd_model_count(m), 2);
    cr_expect_str_eq(rdd_model_pick(m)->advert, "tcp:Port=53:60,Password=*");
    rdd_model_set_filter(m, "");
    cr_expect_str_eq(rdd_model_pick(m)->advert, "tcp:Port=53:60,Password=*");
    rdd_model_free(m);
}

Test(model, hosts_asking_answered_and_failed)
{
    struct rdd_model *m = rdd_model_new(RDB_FILTER_ALL);
    struct rdd_host a = host("alpha", NULL, 0, false), c = host("charlie", NULL, 0, false);
    rdd_model_host(m, &a);
    rdd_model_host(m, &c);
    cr_assert_eq(rdd_model_hosts(m), 2);
    cr_expect_eq(rdd_model_host_at(m, 0)->state, RDD_MH_ASKING);
    a = host("alpha", rows_a, 2, false);
    c = host("charlie", NULL, 0, true);
    rdd_model_host(m, &a);
    rdd_model_host(m, &c);
    cr_expect_eq(rdd_model_host_at(m, 0)->state, RDD_MH_ANSWERED);
    cr_expect_eq(rdd_model_host_at(m, 0)->nrows, 2);
    cr_expect_eq(rdd_model_host_at(m, 1)->state, RDD_MH_FAILED);
    cr_expect_str_eq(rdd_model_host_at(m, 1)->err, "charlie: no answer");
    /* a host that turned out to be another's broker (alpha's, by another name) leaves */
    struct rdd_host d = host("alpha.example", NULL, 0, false);
    rdd_model_host(m, &d);
    cr_expect_eq(rdd_model_hosts(m), 3);
    d.done = d.duplicate = true;
    rdd_model_host(m, &d);
    cr_expect_eq(rdd_model_hosts(m), 2);
    cr_expect_eq(rdd_model_count(m), 2);
    rdd_model_free(m);
}
