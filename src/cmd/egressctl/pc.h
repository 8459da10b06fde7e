/* pc: what the proxy-config kinds share (proxyconfig.c runs the command; a kind whose
 * table is not one row per item of an admin page's list has a file of its own, as
 * pc_endpoint.c). */
#ifndef EGRESS_CMD_EGRESSCTL_PC_H
#define EGRESS_CMD_EGRESSCTL_PC_H

#include <stddef.h>

#include "config/ydoc.h"

struct sock_addr;

enum pc_format { PC_SHORT, PC_JSON, PC_YAML };

/* The filter flags; each kind accepts some of them, as istioctl's subcommands do. */
struct pc_opts {
	const char *fqdn, *subset, *direction, *name, *address;  /* NULL: not given */
	const char *cluster, *status;                            /* NULL: not given */
	long port;                                               /* 0: not given */
};

/* Parses an admin page's JSON body (named where in messages) into s. Returns 0, or -1
 * after printing "error: cannot read the WHAT: ...". */
struct sbuf;
int ctl_pc_parse(const char *where, const struct sbuf *body, const char *what, struct ystream *s);

/* -o json|yaml: items (nodes of stream s), as a list, the way the admin page has them. */
void ctl_pc_print_doc(struct ystream *s, const struct ynode *const *items, size_t n,
                      enum pc_format f);

/* proxy-config endpoint (pc_endpoint.c). Returns the exit status. */
extern const char ctl_pc_endpoint_usage[];
int ctl_pc_endpoints(const struct pc_opts *o, enum pc_format f, const struct sock_addr *a,
                     const char *addr);

#endif
