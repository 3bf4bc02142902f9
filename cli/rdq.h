/* rdq's verbs, shared between its files. */
#ifndef RDQ_CLI_RDQ_H
#define RDQ_CLI_RDQ_H

#include "discover.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define RDQ_BROWSE_TIMEOUT_MS 3000

/* A number from lo to hi for `flag`, or -1 with a message. */
int rdq_parse_number(const char *flag, const char *v, long lo, long hi, long *out);

/* -via T: a broker's query endpoint (its -listen string, or a client string). */
int rdq_via_parse(const char *v, struct rdt_tstring *ts);

/* rdq -browse; rdq -QR without a host. */
int rdq_browse(int argc, char **argv);
int rdq_qr_all(int argc, char **argv);
/* The interactive list: 0 and the picked row's client string in out, or 1 (left). */
int rdq_browse_tui(const struct rdd_browse_config *cfg, char *out, size_t len);

#endif
