/* natkit CLI: the control socket server and client (control.h; docs/internals/cli-status.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "natkit/clock.h"

/* ---- the answer buffer ---- */

static int buf_room(ctl_buf *b, size_t n)
{
    if (b->failed)
        return -1;
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = cap <= CTL_RESPONSE_MAX ? realloc(b->p, cap) : NULL;
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void ctl_buf_printf(ctl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_room(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ctl_buf_str(ctl_buf *b, const char *s)
{
    char small[256];
    size_t n = cli_json_quote(small, sizeof(small), s);
    if (n < sizeof(small)) {
        ctl_buf_printf(b, "%s", small);
        return;
    }
    char *big = malloc(n + 1);
    if (big == NULL) {
        b->failed = 1;
        return;
    }
    cli_json_quote(big, n + 1, s);
    ctl_buf_printf(b, "%s", big);
    free(big);
}

void ctl_buf_free(ctl_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- the runtime directory ---- */

int ctl_dir(char *buf, size_t cap, int create, char *why, size_t why_cap)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/natkit", xdg);
    else if (geteuid() == 0)
        n = snprintf(buf, cap, "/run/natkit");
    else
        n = snprintf(buf, cap, "/tmp/natkit-%lu", (unsigned long)geteuid());
    if (n < 0 || (size_t)n >= cap) {
        snprintf(why, why_cap, "runtime directory name too long");
        errno = ENAMETOOLONG;
        return -1;
    }
    if (create && mkdir(buf, 0700) != 0 && errno != EEXIST) {
        snprintf(why, why_cap, "cannot make %s: %s", buf, strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(buf, &st) != 0) {
        snprintf(why, why_cap, "%s: %s", buf, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        snprintf(why, why_cap, "%s is not a directory of this user (uid %lu): not used", buf,
                 (unsigned long)geteuid());
        errno = EPERM;
        return -1;
    }
    if ((st.st_mode & 077) != 0 && (!create || chmod(buf, 0700) != 0)) {
        snprintf(why, why_cap, "%s is open to other users (mode %03o): not used", buf, (unsigned)(st.st_mode & 0777));
        errno = EPERM;
        return -1;
    }
    return 0;
}

/* ---- server ---- */

typedef struct ctl_client {
    int fd;              /* -1: free */
    int64_t deadline;
    char req[CTL_REQUEST_MAX];
    size_t req_len;
    ctl_buf out;         /* the answer, once asked */
    size_t out_off;
    int answering;
} ctl_client;

struct ctl_server {
    int fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev;
    ino_t ino;
    ctl_answer_fn fn;
    void *ctx;
    ctl_client cl[CTL_CLIENTS];
};

static int set_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa->sun_path, path, strlen(path));
    return 0;
}

/* 1 when something answers at path (a live socket). */
static int alive(const char *path)
{
    struct sockaddr_un sa;
    if (set_addr(&sa, path) != 0)
        return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

int ctl_open(ctl_server **out, const char *cmd, const char *path, ctl_answer_fn fn, void *ctx, char *why,
             size_t why_cap)
{
    char dir[256], def[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (path == NULL) {
        if (ctl_dir(dir, sizeof(dir), 1, why, why_cap) != 0)
            return -1;
        int n = snprintf(def, sizeof(def), "%s/%s-%ld.sock", dir, cmd, (long)getpid());
        if (n < 0 || (size_t)n >= sizeof(def)) {
            snprintf(why, why_cap, "control socket name in %s is too long", dir);
            return -1;
        }
        path = def;
    }
    struct sockaddr_un sa;
    if (set_addr(&sa, path) != 0) {
        snprintf(why, why_cap, "control socket %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode) || alive(path)) {
            snprintf(why, why_cap, "control socket %s: %s", path,
                     S_ISSOCK(st.st_mode) ? "another process answers there" : "exists and is not a socket");
            errno = EADDRINUSE;
            return -1;
        }
        unlink(path); /* stale: its process is gone */
    }
    ctl_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(why, why_cap, "out of memory");
        return -1;
    }
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(077); /* the file is made 0600 (0700 & ~077 for a socket: rw for us) */
    int rc = s->fd < 0 ? -1 : bind(s->fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc == 0 && (chmod(path, 0600) != 0 || listen(s->fd, 8) != 0 || lstat(path, &st) != 0))
        rc = -1;
    if (rc != 0) {
        int e = errno;
        snprintf(why, why_cap, "cannot open control socket %s: %s", path, strerror(e));
        if (s->fd >= 0) {
            close(s->fd);
            if (e != EADDRINUSE)
                unlink(path);
        }
        free(s);
        errno = e;
        return -1;
    }
    snprintf(s->path, sizeof(s->path), "%s", path);
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->fn = fn;
    s->ctx = ctx;
    for (int i = 0; i < CTL_CLIENTS; i++)
        s->cl[i].fd = -1;
    *out = s;
    return 0;
}

ctl_server *ctl_start(const char *cmd, const char *path, const char *who, ctl_answer_fn fn, void *ctx, int *fatal)
{
    ctl_server *s = NULL;
    char why[512];
    *fatal = 0;
    if (ctl_open(&s, cmd, path, fn, ctx, why, sizeof(why)) != 0) {
        /* the default socket is a convenience: without it the command still runs */
        *fatal = path != NULL;
        if (*fatal)
            cli_fail(cmd, CLI_EXIT_FAIL, 0, "%s", why);
        else
            cli_warn(cmd, 0, "%s (natkit status will not see %s)", why, who);
        return NULL;
    }
    return s;
}

const char *ctl_path(const ctl_server *s)
{
    return s->path;
}

static void drop(ctl_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    ctl_buf_free(&c->out);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static ctl_client *free_client(ctl_server *s)
{
    for (int i = 0; i < CTL_CLIENTS; i++)
        if (s->cl[i].fd < 0)
            return &s->cl[i];
    return NULL;
}

/* Only this user (or root) may ask. */
static int peer_ok(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
        return 0;
    return cr.uid == geteuid() || cr.uid == 0;
}

static void accept_clients(ctl_server *s)
{
    ctl_client *c;
    while ((c = free_client(s)) != NULL) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or an error we do not act on: the next turn tries again */
        if (!peer_ok(fd)) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->deadline = nk_now_ms() + CTL_CLIENT_MS;
    }
}

static void answer(ctl_server *s, ctl_client *c)
{
    c->answering = 1;
    if (strcmp(c->req, "status") == 0) {
        s->fn(s->ctx, &c->out);
    } else {
        ctl_buf_printf(&c->out, "{\"error\":");
        ctl_buf_str(&c->out, "unknown request (want: status)");
        ctl_buf_printf(&c->out, "}");
    }
    ctl_buf_printf(&c->out, "\n");
    if (c->out.failed) {
        ctl_buf_free(&c->out);
        ctl_buf_printf(&c->out, "{\"error\":\"answer too large\"}\n");
    }
    shutdown(c->fd, SHUT_RD);
}

/* Reads what is there; 0 keeps the client, -1 drops it. */
static int client_read(ctl_server *s, ctl_client *c)
{
    for (;;) {
        size_t room = sizeof(c->req) - 1 - c->req_len;
        if (room == 0)
            return -1; /* no newline in CTL_REQUEST_MAX bytes */
        ssize_t n = recv(c->fd, c->req + c->req_len, room, MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        if (n == 0)
            return -1; /* closed before a whole line */
        char *nl = memchr(c->req + c->req_len, '\n', (size_t)n);
        c->req_len += (size_t)n;
        if (nl != NULL) {
            *nl = '\0';
            if (nl > c->req && nl[-1] == '\r')
                nl[-1] = '\0';
            answer(s, c);
            return 0;
        }
    }
}

/* Writes what fits; 0 keeps the client, -1 drops it (done or failed). */
static int client_write(ctl_client *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        c->out_off += (size_t)n;
    }
    return -1; /* all of it: close */
}

unsigned ctl_pollfds(ctl_server *s, struct pollfd *pf, unsigned room)
{
    unsigned n = 0;
    if (s == NULL || room == 0)
        return 0;
    pf[n++] = (struct pollfd){.fd = free_client(s) != NULL ? s->fd : -1, .events = POLLIN};
    for (int i = 0; i < CTL_CLIENTS && n < room; i++)
        pf[n++] = (struct pollfd){.fd = s->cl[i].fd, .events = s->cl[i].answering ? POLLOUT : POLLIN};
    return n;
}

void ctl_service(ctl_server *s, const struct pollfd *pf, unsigned n)
{
    if (s == NULL)
        return;
    int64_t now = nk_now_ms();
    for (unsigned i = 1; i < n && i <= CTL_CLIENTS; i++) {
        ctl_client *c = &s->cl[i - 1];
        if (c->fd < 0 || pf[i].fd != c->fd)
            continue;
        short rev = pf[i].revents;
        int rc = 0;
        if (!c->answering && (rev & (POLLIN | POLLHUP | POLLERR)))
            rc = client_read(s, c);
        if (rc == 0 && c->answering && (rev & (POLLOUT | POLLIN | POLLHUP | POLLERR) || c->out_off == 0))
            rc = client_write(c);
        if (rc != 0)
            drop(c);
    }
    for (int i = 0; i < CTL_CLIENTS; i++) /* slow or silent clients go */
        if (s->cl[i].fd >= 0 && now > s->cl[i].deadline)
            drop(&s->cl[i]);
    if (n > 0 && pf[0].fd >= 0 && (pf[0].revents & POLLIN))
        accept_clients(s);
}

void ctl_close(ctl_server *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < CTL_CLIENTS; i++)
        drop(&s->cl[i]);
    close(s->fd);
    struct stat st;
    if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        unlink(s->path);
    free(s);
}

/* ---- client ---- */

int ctl_query(const char *path, int timeout_ms, char **out, size_t *len)
{
    struct sockaddr_un sa;
    if (set_addr(&sa, path) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    static const char req[] = "status\n";
    size_t sent = 0, have = 0, cap = 0;
    char *buf = NULL;
    int64_t until = nk_now_ms() + timeout_ms;
    int err = 0;
    for (;;) {
        int64_t left = until - nk_now_ms();
        if (left <= 0) {
            err = ETIMEDOUT;
            break;
        }
        struct pollfd pf = {.fd = fd, .events = sent < sizeof(req) - 1 ? POLLOUT : POLLIN};
        if (poll(&pf, 1, (int)left) < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (sent < sizeof(req) - 1) {
            ssize_t n = send(fd, req + sent, sizeof(req) - 1 - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                err = errno;
                break;
            }
            sent += n > 0 ? (size_t)n : 0;
            continue;
        }
        if (cap - have < 4096) {
            cap = cap ? cap * 2 : 16384;
            char *p = cap <= CTL_RESPONSE_MAX + 1 ? realloc(buf, cap) : NULL;
            if (p == NULL) {
                err = cap > CTL_RESPONSE_MAX + 1 ? EMSGSIZE : ENOMEM;
                break;
            }
            buf = p;
        }
        ssize_t n = recv(fd, buf + have, cap - have - 1, MSG_DONTWAIT);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            err = errno;
            break;
        }
        have += (size_t)n;
    }
    close(fd);
    if (err != 0 || buf == NULL) {
        free(buf);
        errno = err != 0 ? err : EPROTO;
        return -1;
    }
    buf[have] = '\0';
    *out = buf;
    *len = have;
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* NAME-PID.sock: the PID, else -1. */
static long name_pid(const char *name)
{
    size_t n = strlen(name);
    if (n < 7 || strcmp(name + n - 5, ".sock") != 0)
        return -1;
    const char *dash = strrchr(name, '-');
    if (dash == NULL || dash == name)
        return -1;
    char *end;
    long pid = strtol(dash + 1, &end, 10);
    return end == name + n - 5 && end > dash + 1 && pid > 0 ? pid : -1;
}

int ctl_each(const char *dir, void (*fn)(void *ctx, const char *path, long pid), void *ctx)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, by_name), count = 0;
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        long pid = name_pid(list[i]->d_name);
        char path[512];
        if (pid > 0 && (size_t)snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name) < sizeof(path)) {
            fn(ctx, path, pid);
            count++;
        }
        free(list[i]);
    }
    free(list);
    return count;
}
