/* admin: the admin HTTP endpoint (--admin, default 127.0.0.1:15000), on the main thread.
 *
 * A deliberately small HTTP/1.1 server: one request per connection (the response closes
 * it), GET only, heads up to 8 KiB, answered from a handler the owner supplies. It runs
 * on the control thread's loop, never on a worker, so a slow admin client cannot delay
 * requests. */
#ifndef EGRESS_ADMIN_ADMIN_H
#define EGRESS_ADMIN_ADMIN_H

#include "core/sbuf.h"
#include "net/loop.h"
#include "net/sock.h"

struct admin;

/* Fills body and returns the status; *ctype may be set (default text/plain). path is the
 * request target, NUL-terminated (query string included). */
typedef int (*admin_handler)(void *arg, const char *method, const char *path,
                             struct sbuf *body, const char **ctype);

/* Listens on addr. Returns NULL with errno. */
struct admin *admin_start(struct loop *loop, const struct sock_addr *addr, admin_handler h,
                          void *arg);
void admin_stop(struct admin *a);

#endif
