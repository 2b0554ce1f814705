/*
 * natkit CLI: the control socket of a running listen/connect/hub (`natkit status`).
 *
 * A Unix-domain stream socket, mode 0600, in a per-user runtime directory
 * ($XDG_RUNTIME_DIR/natkit, /run/natkit for root, else /tmp/natkit-UID made 0700 and
 * checked), named CMD-PID.sock (or --control PATH), removed at exit. A client sends one
 * request line ("status"); the server answers with one JSON document and closes. The
 * server never blocks: non-blocking sockets, a bounded request, a deadline per client,
 * a few clients at once; anything else is dropped. docs/internals/cli-status.md.
 */
#ifndef CLI_CONTROL_H
#define CLI_CONTROL_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_REQUEST_MAX  256               /* bytes of a request line */
#define CTL_RESPONSE_MAX (8u * 1024 * 1024) /* bytes of an answer */
#define CTL_CLIENTS      2                 /* answered at once (more wait in the backlog) */
#define CTL_FDS          (1 + CTL_CLIENTS) /* pollfds ctl_pollfds may fill */
#define CTL_CLIENT_MS    2000              /* a client has this long to ask and take the answer */

/* A growing text buffer for the answer (capped at CTL_RESPONSE_MAX; failed stays set). */
typedef struct ctl_buf {
    char *p;
    size_t len, cap;
    int failed;
} ctl_buf;

void ctl_buf_printf(ctl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string (escaped), or null when s is NULL. */
void ctl_buf_str(ctl_buf *b, const char *s);
void ctl_buf_free(ctl_buf *b);

/* Writes the JSON document answering "status" into out. */
typedef void (*ctl_answer_fn)(void *ctx, ctl_buf *out);

typedef struct ctl_server ctl_server;

/*
 * The runtime directory (made 0700 when create and missing; one not owned by us, a symlink,
 * or open to others is refused). 0, or -1 with errno set and a message in why.
 */
int ctl_dir(char *buf, size_t cap, int create, char *why, size_t why_cap);

/*
 * Opens the control socket of command cmd: path, or (NULL) DIR/CMD-PID.sock. A stale
 * socket at path (nobody answers) is replaced; a live one is an error. 0, or -1 with a
 * sentence naming the path and the system error in why.
 */
int ctl_open(ctl_server **out, const char *cmd, const char *path, ctl_answer_fn fn, void *ctx, char *why,
             size_t why_cap);
/*
 * ctl_open for a command's main (listen, connect, hub): NULL when it could not, said on stderr;
 * *fatal then says whether to stop. A --control PATH that cannot be opened is a failure
 * (*fatal 1); the default socket (path NULL) is a convenience, so a warning ending "(natkit
 * status will not see WHO)" and *fatal 0.
 */
ctl_server *ctl_start(const char *cmd, const char *path, const char *who, ctl_answer_fn fn, void *ctx, int *fatal);
const char *ctl_path(const ctl_server *s);
/* Fills up to room pollfds (at most CTL_FDS) with what the server waits for; returns how many. */
unsigned ctl_pollfds(ctl_server *s, struct pollfd *pf, unsigned room);
/* After poll: pf/n as ctl_pollfds filled them (revents set). Never blocks. */
void ctl_service(ctl_server *s, const struct pollfd *pf, unsigned n);
/* Closes every client and the socket, and removes the file (if it is still ours). */
void ctl_close(ctl_server *s);

/*
 * Client side. ctl_query sends "status" to the socket at path and reads the answer (NUL-
 * terminated, malloc'd) within timeout_ms: 0, or -1 with errno (ECONNREFUSED: nobody
 * listens there, ETIMEDOUT, EMSGSIZE: over CTL_RESPONSE_MAX).
 */
int ctl_query(const char *path, int timeout_ms, char **out, size_t *len);
/* Calls fn for every DIR/NAME-PID.sock (sorted by name). Returns how many, or -1 (errno). */
int ctl_each(const char *dir, void (*fn)(void *ctx, const char *path, long pid), void *ctx);

#endif
