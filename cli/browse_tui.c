/* rdq -browse in a terminal: the live list of every server found, drawn with ncurses from the
 * browse model on the same loop that asks the brokers. Handlers only change the model and mark
 * the screen dirty; it is drawn once per turn of the loop. */
#include "rdq.h"

#include <curses.h>
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define SOURCES_MAX 4

struct tui {
    struct event_base *base;
    struct rdd_model *model;
    struct rdd_browse *browse;
    const struct rdd_browse_config *cfg;
    bool dirty, quit, picked, finished;
    int tty;
    size_t top; /* the first row on the screen */
    int height; /* rows the list has on the screen (0: the terminal is too small) */
    char sources[SOURCES_MAX][RDT_ERR_MAX + 64]; /* domains or the LAN that failed */
    int nsources;
};

static int ask(struct tui *t);

/* ---- Keys, in one table ---- */

static void key_up(struct tui *t)
{
    rdd_model_move(t->model, -1);
}
static void key_down(struct tui *t)
{
    rdd_model_move(t->model, 1);
}
static void key_pgup(struct tui *t)
{
    rdd_model_move(t->model, -(long)(t->height > 1 ? t->height - 1 : 1));
}
static void key_pgdn(struct tui *t)
{
    rdd_model_move(t->model, t->height > 1 ? t->height - 1 : 1);
}
static void key_home(struct tui *t)
{
    rdd_model_move(t->model, -(long)rdd_model_count(t->model));
}
static void key_end(struct tui *t)
{
    rdd_model_move(t->model, (long)rdd_model_count(t->model));
}

static void key_pick(struct tui *t)
{
    if (t->height > 0 && rdd_model_pick(t->model)) /* never a row that cannot be seen */
        t->picked = t->quit = true;
}

/* Ctrl-R: every host is asked again (the LAN browsed again too). */
static void key_again(struct tui *t)
{
    rdd_browse_free(t->browse);
    t->browse = NULL;
    rdd_model_clear(t->model);
    t->nsources = 0;
    t->finished = false;
    if (ask(t) != 0)
        t->quit = true;
}

static void key_leave(struct tui *t)
{
    t->quit = true;
}

/* The reference's two dialogs, and all: debugging servers to join a session, process and KD
 * servers for a smart client. */
static void key_kind(struct tui *t)
{
    enum rdb_filter k = rdd_model_kind(t->model);
    rdd_model_set_kind(t->model, k == RDB_FILTER_ALL        ? RDB_FILTER_DEBUGGER
                                 : k == RDB_FILTER_DEBUGGER ? RDB_FILTER_REMOTE
                                                            : RDB_FILTER_ALL);
}

static void key_erase(struct tui *t)
{
    char f[RDD_FILTER_MAX + 1];
    snprintf(f, sizeof(f), "%s", rdd_model_filter(t->model));
    if (f[0])
        f[strlen(f) - 1] = '\0';
    rdd_model_set_filter(t->model, f);
}

static void key_clear(struct tui *t)
{
    rdd_model_set_filter(t->model, "");
}

static const struct {
    int key;
    void (*fn)(struct tui *t);
} keys[] = {
    {KEY_UP, key_up},         {KEY_DOWN, key_down}, {KEY_PPAGE, key_pgup},
    {KEY_NPAGE, key_pgdn},    {KEY_HOME, key_home}, {KEY_END, key_end},
    {'\n', key_pick},         {'\r', key_pick},     {KEY_ENTER, key_pick},
    {27, key_leave},          {'\t', key_kind},     {KEY_BACKSPACE, key_erase},
    {127, key_erase},         {8, key_erase},       {21 /* ^U */, key_clear},
    {18 /* ^R */, key_again},
};

static void on_key(struct tui *t, int c)
{
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (keys[i].key == c) {
            keys[i].fn(t);
            return;
        }
    const char *f = rdd_model_filter(t->model);
    if (c == 'q' && !f[0]) { /* q leaves; once a filter is typed, it is a letter of it */
        t->quit = true;
    } else if (c >= 0x20 && c < 0x7f) {
        char more[RDD_FILTER_MAX + 2];
        snprintf(more, sizeof(more), "%s%c", f, c);
        rdd_model_set_filter(t->model, more);
    }
}

/* ---- Drawing ---- */

/* A line of the screen, cut at its right edge (ncurses would wrap it over the next lines). */
static void put_line(int y, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_line(int y, const char *fmt, ...)
{
    char line[RDT_STRING_MAX + RDT_HOST_MAX + RDB_DESC_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (y >= 0 && y < LINES) {
        mvaddnstr(y, 0, line, COLS);
        clrtoeol();
    }
}

static const char *kind_name(enum rdb_filter k)
{
    return k == RDB_FILTER_DEBUGGER ? "debugging servers"
           : k == RDB_FILTER_REMOTE ? "process and KD servers"
                                    : "all servers";
}

static void draw_header(const struct tui *t)
{
    size_t asking = 0, failed = 0, n = rdd_model_hosts(t->model);
    for (size_t i = 0; i < n; i++) {
        enum rdd_mhost_state s = rdd_model_host_at(t->model, i)->state;
        asking += s == RDD_MH_ASKING;
        failed += s == RDD_MH_FAILED;
    }
    attron(A_BOLD);
    put_line(0, "rdq -browse: %zu shown, %zu hosts (%zu asking, %zu failed)%s",
             rdd_model_count(t->model), n, asking, failed, t->finished ? "" : " ...");
    attroff(A_BOLD);
    put_line(1, "kind: %s [Tab]   filter: %s", kind_name(rdd_model_kind(t->model)),
             rdd_model_filter(t->model));
    put_line(2, "  %-24.24s %-29.29s %s", "HOST", "TYPE", "ADVERTISED STRING / DESCRIPTION");
}

static void draw_rows(struct tui *t, int first, int height)
{
    size_t count = rdd_model_count(t->model), sel = rdd_model_selected(t->model);
    if (count <= (size_t)height)
        t->top = 0;
    else if (t->top > count - (size_t)height)
        t->top = count - (size_t)height; /* no blank lines under rows above */
    if (sel < t->top)
        t->top = sel;
    if (height > 0 && sel >= t->top + (size_t)height)
        t->top = sel - (size_t)height + 1;
    for (int y = 0; y < height && t->top + (size_t)y < count; y++) {
        const struct rdd_mrow *r = rdd_model_row(t->model, t->top + (size_t)y);
        bool on = t->top + (size_t)y == sel;
        if (on)
            attron(A_REVERSE);
        put_line(first + y, "%c %-24.24s %-29.29s %s%s%s", on ? '>' : ' ', r->host,
                 rdb_kind_title(r->kind), r->advert, r->desc[0] ? "  " : "", r->desc);
        if (on)
            attroff(A_REVERSE);
    }
    if (count == 0 && height > 0)
        put_line(first, "  %s",
                 t->finished ? "(no server found that the kind and filter let through)"
                             : "(asking...)");
}

/* Hosts still asked, and those that failed with why, under the list. */
static void draw_hosts(const struct tui *t, int first, int height)
{
    int y = first;
    for (int i = 0; i < t->nsources && y < first + height; i++)
        put_line(y++, "  failed: %s", t->sources[i]);
    for (size_t i = 0; i < rdd_model_hosts(t->model) && y < first + height; i++) {
        const struct rdd_mhost *h = rdd_model_host_at(t->model, i);
        if (h->state == RDD_MH_ASKING)
            put_line(y++, "  asking %s ...", h->name);
        else if (h->state == RDD_MH_FAILED)
            put_line(y++, "  failed: %s", h->err);
    }
}

static void draw(struct tui *t)
{
    erase();
    int hosts = t->nsources;
    for (size_t i = 0; i < rdd_model_hosts(t->model); i++)
        hosts += rdd_model_host_at(t->model, i)->state != RDD_MH_ANSWERED;
    int under = hosts < 4 ? hosts : 4;
    t->height = LINES - 4 - under;
    if (t->height < 1 || COLS < 20) {
        t->height = 0;
        put_line(0, "rdq -browse: the terminal is too small (Esc leaves)");
        refresh();
        t->dirty = false;
        return;
    }
    draw_header(t);
    draw_rows(t, 3, t->height);
    draw_hosts(t, 3 + t->height, under);
    put_line(LINES - 1,
             "Up/Down PgUp/PgDn move, type to filter, Tab kind, Enter pick, ^R ask again, "
             "Esc%s leave",
             rdd_model_filter(t->model)[0] ? "" : " or q");
    refresh();
    t->dirty = false;
}

/* ---- The loop ---- */

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tui *t = arg;
    int c;
    while (!t->quit && (c = getch()) != ERR) {
        if (c == 27 && getch() != ERR)
            continue; /* Alt and a key, or the rest of a sequence ncurses did not know */
        on_key(t, c);
        t->dirty = true;
    }
}

static void on_winch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tui *t = arg;
    struct winsize ws;
    if (ioctl(t->tty, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
        resizeterm(ws.ws_row, ws.ws_col);
    t->dirty = true;
}

/* Ctrl-C, or a signal to end: leave as Esc does, the terminal restored. */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tui *t = arg;
    t->quit = true;
}

/* Ctrl-Z: the terminal back to the shell while stopped, the screen again after fg. */
static void on_tstp(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tui *t = arg;
    endwin();
    kill(getpid(), SIGSTOP);
    refresh();
    keypad(stdscr, TRUE);
    curs_set(0);
    t->dirty = true;
}

static void on_source(const char *what, const char *err, void *arg)
{
    struct tui *t = arg;
    if (t->nsources < SOURCES_MAX)
        snprintf(t->sources[t->nsources++], sizeof(t->sources[0]), "%s: %s", what, err);
    t->dirty = true;
}

static void on_host(const struct rdd_host *h, void *arg)
{
    struct tui *t = arg;
    rdd_model_host(t->model, h);
    t->dirty = true;
}

static void on_done(void *arg)
{
    struct tui *t = arg;
    t->finished = t->dirty = true;
}

/* The screen on the terminal itself, so that standard output may be a pipe ($(rdq -browse)). */
static FILE *screen_open(void)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty) {
        fprintf(stderr, "rdq: -browse: cannot open the terminal (/dev/tty): %s\n", strerror(errno));
        return NULL;
    }
    if (!newterm(NULL, tty, tty)) {
        const char *term = getenv("TERM");
        fprintf(stderr,
                "rdq: -browse: the terminal type \"%s\" is not known to ncurses (set TERM, "
                "or use -list)\n",
                term ? term : "");
        fclose(tty);
        return NULL;
    }
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(25); /* Esc leaves at once, not after ncurses's second */
    curs_set(0);
    return tty;
}

#define EVENTS 7 /* the terminal's input and the signals */

/* Runs the list until a pick or a leave: 0 and the pick in `out`, or 1. */
static int run(struct tui *t, char *out, size_t len)
{
    FILE *tty = screen_open();
    if (!tty)
        return -ENOTTY;
    t->tty = fileno(tty);
    struct event *ev[EVENTS] = {event_new(t->base, t->tty, EV_READ | EV_PERSIST, on_stdin, t),
                                evsignal_new(t->base, SIGWINCH, on_winch, t),
                                evsignal_new(t->base, SIGTSTP, on_tstp, t),
                                evsignal_new(t->base, SIGINT, on_stop, t),
                                evsignal_new(t->base, SIGTERM, on_stop, t),
                                evsignal_new(t->base, SIGHUP, on_stop, t),
                                evsignal_new(t->base, SIGQUIT, on_stop, t)};
    bool ok = true;
    for (int i = 0; i < EVENTS; i++)
        ok = ok && ev[i] && event_add(ev[i], NULL) == 0;
    t->quit = !ok;
    draw(t);
    while (!t->quit) {
        event_base_loop(t->base, EVLOOP_ONCE);
        if (t->dirty && !t->quit)
            draw(t);
    }
    endwin();
    fclose(tty);
    for (int i = 0; i < EVENTS; i++)
        if (ev[i])
            event_free(ev[i]);
    if (!ok)
        return -ENOMEM;
    const struct rdd_mrow *r = t->picked ? rdd_model_pick(t->model) : NULL;
    if (!r)
        return 1;
    snprintf(out, len, "%s", r->client);
    return 0;
}

/* Asks every host (again): the kind is the list's to switch, so all rows are asked for. */
static int ask(struct tui *t)
{
    struct rdd_browse_config all = *t->cfg;
    all.filter = RDB_FILTER_ALL;
    struct rdd_browse_ops ops = {.host = on_host, .source = on_source, .done = on_done};
    char err[RDT_ERR_MAX];
    int rc = rdd_browse_open(&t->browse, t->base, &all, &ops, t, err, sizeof(err));
    if (rc)
        snprintf(t->sources[0], sizeof(t->sources[0]), "%s", err);
    t->dirty = true;
    return rc;
}

int rdq_browse_tui(const struct rdd_browse_config *cfg, char *out, size_t len)
{
    struct tui t = {.base = event_base_new(), .model = rdd_model_new(cfg->filter), .cfg = cfg};
    int rc = t.base && t.model ? ask(&t) : -ENOMEM;
    if (rc == 0)
        rc = run(&t, out, len);
    else if (rc != -ENOMEM)
        fprintf(stderr, "rdq: -browse: %s\n", t.sources[0]);
    if (rc == -ENOMEM)
        fprintf(stderr, "rdq: -browse: out of memory\n");
    rdd_browse_free(t.browse);
    rdd_model_free(t.model);
    if (t.base)
        event_base_free(t.base);
    return rc == -ENOTTY ? EXIT_USAGE : rc < 0 ? EXIT_FAIL : rc;
}
