/* Simulated LL-HLS viewers in C, for benchmarks/cluster.py and benchmarks/hls_delivery.py.
 *
 * Why C: the viewers run on the same two cores as the server and the edge they measure. The
 * Python client (uvloop, a minimal protocol) costs about 40 us of CPU per request; at 2,000
 * viewers that is 4,000 requests in each part's burst, ~150 ms of CPU every 0.333 s taken from
 * the system under test, and the part delay it records includes its own event loop's queue
 * (a process's thousandth viewer is handled tens of ms after its first). This one costs less
 * than half of that, nearly all of it in the kernel.
 * Real players each run on their own machine; with this client more of what is measured is
 * the server and the edge.
 *
 * It does what the Python viewer (hls_delivery.viewer) does, as hls.js does on one rung: GET
 * the media playlist until it has a preload hint, then repeat: a blocking reload for the hinted
 * part (_HLS_msn/_HLS_part/_HLS_skip=YES), then a GET of each part it lists that this viewer
 * has not had, one after another. One keep-alive connection per viewer, HTTP/1.1, bodies sized
 * by Content-Length or chunked (Varnish streams a miss it is still fetching that way).
 *
 *   llhls_viewers URL BASE FIRST COUNT DURATION RAMP OUT
 *       URL   the rendition's media playlist, http://host:port/path[?query]
 *       BASE  the URL its part URIs are relative to (ends with /)
 *       viewer i (0-based) adds session=bench-viewer-%08d (FIRST+i) and starts RAMP*i/COUNT s
 *       after the start; viewers stop starting requests after DURATION s.
 *       OUT gets the JSON the Python worker writes: {"records": [[[msn, part, t_playlist,
 *       t_part, bytes], ...] per viewer], "errors": {name: count}, "cpu": s, "duration": s}
 *   llhls_viewers --parse FILE
 *       prints what the playlist parser read of FILE as JSON (tested against the Python one).
 *
 * Times in records are CLOCK_REALTIME (Python's time.time(), compared across processes).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ---------------------------------------------------------------------- */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory");
    return q;
}

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the playlist parser: the part numbers as a player counts them ------------------------ */

typedef struct {
    int msn, part;
    char *uri;
} Part;

typedef struct {
    char *body;      /* the bytes parsed (owned: the cache compares against them) */
    size_t len;
    Part *parts;     /* in playlist order; uri points into `text` */
    int nparts;
    int has_hint, hint_msn, hint_part;
    char *text;      /* a NUL-terminated copy the uris point into */
} Playlist;

/* The value of ATTR="..." in line (up to end), or NULL; NUL-terminates it in place. */
static char *quoted_attr(char *line, const char *attr) {
    char *p = strstr(line, attr);
    if (!p) return NULL;
    p += strlen(attr);
    char *q = strchr(p, '"');
    if (!q) return NULL;
    *q = 0;
    return p;
}

static long num_after(const char *line, const char *key) {
    const char *p = strstr(line, key);
    return p ? strtol(p + strlen(key), NULL, 10) : 0;
}

/* Mirrors benchmarks/lib/playlist.py parse_media_playlist for the fields used here: parts
 * (msn, index, uri) counted from EXT-X-MEDIA-SEQUENCE, EXT-X-SKIP and each segment URI line,
 * and the TYPE=PART preload hint. */
static void parse_playlist(Playlist *pl, const char *body, size_t len) {
    memset(pl, 0, sizeof *pl);
    pl->body = xrealloc(NULL, len);
    memcpy(pl->body, body, len);
    pl->len = len;
    pl->text = xrealloc(NULL, len + 1);
    memcpy(pl->text, body, len);
    pl->text[len] = 0;
    int cap = 0, msn = 0, part = 0, expect_uri = 0;
    char *save = NULL;
    for (char *line = strtok_r(pl->text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r') line[--n] = 0;
        if (!n) continue;
        if (expect_uri && line[0] != '#') {
            msn++;
            part = 0;
            expect_uri = 0;
            continue;
        }
        if (!strncmp(line, "#EXT-X-PART:", 12)) {
            char *uri = quoted_attr(line, "URI=\"");
            if (pl->nparts == cap) {
                cap = cap ? 2 * cap : 32;
                pl->parts = xrealloc(pl->parts, cap * sizeof(Part));
            }
            pl->parts[pl->nparts++] = (Part){msn, part, uri ? uri : ""};
            part++;
        } else if (!strncmp(line, "#EXTINF:", 8)) {
            expect_uri = 1;
        } else if (!strncmp(line, "#EXT-X-PRELOAD-HINT:", 20) && strstr(line, "TYPE=PART")) {
            if (quoted_attr(line, "URI=\"")) {
                pl->has_hint = 1;
                pl->hint_msn = msn;
                pl->hint_part = part;
            }
        } else if (!strncmp(line, "#EXT-X-MEDIA-SEQUENCE:", 22)) {
            msn = (int)strtol(line + 22, NULL, 10);
        } else if (!strncmp(line, "#EXT-X-SKIP:", 12)) {
            msn += (int)num_after(line, "SKIPPED-SEGMENTS=");
        }
    }
}

static void free_playlist(Playlist *pl) {
    free(pl->body);
    free(pl->text);
    free(pl->parts);
    memset(pl, 0, sizeof *pl);
}

/* Every viewer on a rung gets the same playlist bytes after each part: parse them once per
 * process (a real player parses on its own machine; here it would be CPU taken from the
 * server under test). */
#define CACHE_SIZE 8
static Playlist cache[CACHE_SIZE];
static int cache_next;

static const Playlist *parsed(const char *body, size_t len) {
    for (int i = 0; i < CACHE_SIZE; i++)
        if (cache[i].body && cache[i].len == len && !memcmp(cache[i].body, body, len))
            return &cache[i];
    Playlist *pl = &cache[cache_next];
    cache_next = (cache_next + 1) % CACHE_SIZE;
    free_playlist(pl);
    parse_playlist(pl, body, len);
    return pl;
}

/* ---- errors by name ---------------------------------------------------------------------- */

#define MAX_ERRORS 64
static struct {
    char name[48];
    long count;
} errors[MAX_ERRORS];
static int nerrors;

static void count_error(const char *fmt, ...) {
    char name[48];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (int i = 0; i < nerrors; i++)
        if (!strcmp(errors[i].name, name)) {
            errors[i].count++;
            return;
        }
    if (nerrors < MAX_ERRORS) {
        snprintf(errors[nerrors].name, sizeof errors[nerrors].name, "%s", name);
        errors[nerrors++].count = 1;
    }
}

/* ---- viewers and their connections ------------------------------------------------------- */

typedef struct {
    int msn, part, size;
    double t_pl, t_part;
} Record;

enum {
    GOT_HEAD,
    GOT_LENGTH_BODY,
    GOT_CHUNK_SIZE,
    GOT_CHUNK_DATA,
    GOT_CHUNK_END,
    GOT_TRAILER,
    GOT_ALL /* a sized body taken by discard(): the response is complete */
};
enum { REQ_START, REQ_BLOCKING, REQ_RESTART, REQ_PART }; /* what the request in flight is */

typedef struct Viewer {
    int id, fd, connected, busy, done;
    double wake_at; /* monotonic: sleeping until then when > 0 */
    int kind;       /* REQ_* of the request in flight, or of the next one when sleeping */
    /* the response being read */
    char *buf;
    size_t blen, bcap;
    int stage, status, close_after;
    long remaining; /* body bytes (or chunk bytes) still to come */
    char *body;
    size_t body_len, body_cap;
    size_t got;     /* body bytes of this response */
    int keep_body;
    /* the player */
    int msn, part, last_msn, last_part, ended;
    double t_pl;
    Part *pending; /* parts still to GET after a playlist (uris owned) */
    int npending, ipending, cappending;
    Record *recs;
    int nrecs, caprecs;
    char *outbuf;
    size_t outlen, outoff;
} Viewer;

static Viewer *viewers;
static int nviewers, epfd, active;
static char host[256], hostport[300], url_path[2048], base_path[2048];
static int port;
static double stop_at;

static void send_request(Viewer *v, const char *path);
static void close_conn(Viewer *v);

/* The viewer stops: its connection closes and it counts no more as active. */
static void finish(Viewer *v) {
    v->done = 1;
    v->busy = 0;
    close_conn(v);
    active--;
}

static void close_conn(Viewer *v) {
    if (v->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, v->fd, NULL);
        close(v->fd);
    }
    v->fd = -1;
    v->connected = 0;
    v->blen = 0;
    v->outlen = v->outoff = 0;
}

static void sleep_for(Viewer *v, double seconds, int next_kind) {
    v->busy = 0;
    v->kind = next_kind;
    v->wake_at = now_mono() + seconds;
}

static void viewer_url(Viewer *v, char *out, size_t n, int blocking) {
    int len = snprintf(out, n, "%s%ssession=bench-viewer-%08d", url_path,
                       strchr(url_path, '?') ? "&" : "?", v->id);
    if (blocking)
        snprintf(out + len, n - len, "&_HLS_msn=%d&_HLS_part=%d&_HLS_skip=YES", v->msn, v->part);
}

/* The next request of the player, or sleep/finish. */
static void next_step(Viewer *v) {
    char path[4096];
    if (v->kind == REQ_PART && v->ipending < v->npending) {
        snprintf(path, sizeof path, "%s%s", base_path, v->pending[v->ipending].uri);
        send_request(v, path);
        return;
    }
    if (now_mono() >= stop_at) {
        finish(v);
        return;
    }
    if (v->kind == REQ_PART) v->kind = REQ_BLOCKING;
    viewer_url(v, path, sizeof path, v->kind == REQ_BLOCKING);
    send_request(v, path);
}

static void take_playlist(Viewer *v, const Playlist *pl) {
    for (int i = 0; i < v->npending; i++) free(v->pending[i].uri);
    v->npending = v->ipending = 0;
    for (int i = 0; i < pl->nparts; i++) {
        const Part *p = &pl->parts[i];
        if (p->msn < v->last_msn || (p->msn == v->last_msn && p->part <= v->last_part)) continue;
        if (v->npending == v->cappending) {
            v->cappending = v->cappending ? 2 * v->cappending : 8;
            v->pending = xrealloc(v->pending, v->cappending * sizeof(Part));
        }
        v->pending[v->npending++] = (Part){p->msn, p->part, strdup(p->uri)};
    }
}

/* A whole response arrived for the request in flight. */
static void on_response(Viewer *v) {
    double t = now_wall();
    v->busy = 0;
    switch (v->kind) {
    case REQ_START:
    case REQ_RESTART: {
        if (v->status != 200) {
            if (v->kind == REQ_RESTART) { /* Python: `continue`, the blocking reload again */
                v->kind = REQ_BLOCKING;
                next_step(v);
            } else {
                sleep_for(v, 0.5, REQ_START);
            }
            return;
        }
        const Playlist *pl = parsed(v->body, v->body_len);
        if (!pl->has_hint) {
            if (v->kind == REQ_START)
                sleep_for(v, 0.5, REQ_START);
            else
                finish(v);
            return;
        }
        v->msn = pl->hint_msn;
        v->part = pl->hint_part;
        v->last_msn = pl->hint_msn;
        v->last_part = pl->hint_part - 1;
        v->kind = REQ_BLOCKING;
        next_step(v);
        return;
    }
    case REQ_BLOCKING: {
        v->t_pl = t;
        if (v->status != 200) {
            count_error("playlist %d", v->status);
            sleep_for(v, 0.2, REQ_RESTART);
            return;
        }
        const Playlist *pl = parsed(v->body, v->body_len);
        take_playlist(v, pl);
        if (!pl->has_hint) {
            v->ended = 1; /* finish after the parts */
        } else {
            v->msn = pl->hint_msn;
            v->part = pl->hint_part;
        }
        v->kind = REQ_PART;
        break;
    }
    case REQ_PART: {
        const Part *p = &v->pending[v->ipending];
        v->last_msn = p->msn;
        v->last_part = p->part;
        if (v->status != 200) {
            count_error("part %d", v->status);
        } else {
            if (v->nrecs == v->caprecs) {
                v->caprecs = v->caprecs ? 2 * v->caprecs : 128;
                v->recs = xrealloc(v->recs, v->caprecs * sizeof(Record));
            }
            v->recs[v->nrecs++] = (Record){p->msn, p->part, (int)v->got, v->t_pl, t};
        }
        v->ipending++;
        break;
    }
    }
    if (v->ipending >= v->npending && v->ended) { /* the playlist had no hint */
        finish(v);
        return;
    }
    next_step(v);
}

static void on_failure(Viewer *v, const char *what) {
    count_error("%s", what);
    close_conn(v);
    v->busy = 0;
    /* As the Python viewer: before the first playlist, try again in 0.5 s; in the loop, count
     * it, wait 0.2 s and make the blocking reload for the same part again. */
    if (v->kind == REQ_START)
        sleep_for(v, 0.5, REQ_START);
    else
        sleep_for(v, 0.2, REQ_BLOCKING);
}

static int flush_out(Viewer *v) {
    while (v->outoff < v->outlen) {
        ssize_t n = write(v->fd, v->outbuf + v->outoff, v->outlen - v->outoff);
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            return -1;
        }
        v->outoff += n;
    }
    return 1;
}

static void watch(Viewer *v, int out) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0),
                             .data.ptr = v};
    epoll_ctl(epfd, EPOLL_CTL_MOD, v->fd, &ev);
}

static void send_request(Viewer *v, const char *path) {
    size_t need = strlen(path) + strlen(hostport) + 64;
    v->outbuf = xrealloc(v->outbuf, need);
    v->outlen = snprintf(v->outbuf, need, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: aethex-bench\r\n\r\n",
                         path, hostport);
    v->outoff = 0;
    v->busy = 1;
    v->stage = GOT_HEAD;
    v->body_len = v->got = 0;
    v->keep_body = v->kind != REQ_PART;
    if (v->fd < 0) {
        v->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (v->fd < 0) die("socket: %s", strerror(errno));
        int one = 1;
        setsockopt(v->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        inet_pton(AF_INET, host, &sa.sin_addr);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLOUT, .data.ptr = v};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, v->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
        if (connect(v->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
            on_failure(v, "ConnectionRefusedError");
            return;
        }
        return; /* EPOLLOUT: connected, then the request goes */
    }
    int r = flush_out(v);
    if (r < 0)
        on_failure(v, "ConnectionResetError");
    else if (r == 0)
        watch(v, 1);
}

static void keep(Viewer *v, const char *p, size_t n) {
    v->got += n;
    if (!v->keep_body) return;
    if (v->body_len + n > v->body_cap) {
        v->body_cap = (v->body_len + n) * 2;
        v->body = xrealloc(v->body, v->body_cap);
    }
    memcpy(v->body + v->body_len, p, n);
    v->body_len += n;
}

/* Consume what is buffered; returns 1 when a response is complete (the rest stays buffered). */
static int parse_input(Viewer *v) {
    size_t pos = 0;
    int complete = v->stage == GOT_ALL;
    while (!complete && pos < v->blen) {
        char *p = v->buf + pos;
        size_t avail = v->blen - pos;
        if (v->stage == GOT_HEAD) {
            char *end = memmem(p, avail, "\r\n\r\n", 4);
            if (!end) break;
            size_t hlen = end - p + 4;
            v->status = avail > 12 ? atoi(p + 9) : 0;
            v->remaining = -1;
            v->close_after = 0;
            int chunked = 0;
            /* each header line: from after a \n to its \r (the last one's is `end`) */
            for (char *h = memchr(p, '\n', hlen); h && h < end; h = memchr(h, '\n', end - h)) {
                h++;
                char *eol = memchr(h, '\r', end + 1 - h);
                size_t n = eol - h;
                if (n > 15 && !strncasecmp(h, "content-length:", 15))
                    v->remaining = strtol(h + 15, NULL, 10);
                else if (n > 18 && !strncasecmp(h, "transfer-encoding:", 18))
                    chunked = memmem(h, n, "chunked", 7) != NULL;
                else if (n > 11 && !strncasecmp(h, "connection:", 11))
                    v->close_after = memmem(h, n, "close", 5) != NULL;
            }
            pos += hlen;
            if (chunked) v->stage = GOT_CHUNK_SIZE;
            else if (v->remaining > 0) v->stage = GOT_LENGTH_BODY;
            else complete = 1; /* no body (or an unsized one: not sent by the servers here) */
        } else if (v->stage == GOT_LENGTH_BODY || v->stage == GOT_CHUNK_DATA) {
            size_t n = avail < (size_t)v->remaining ? avail : (size_t)v->remaining;
            keep(v, p, n);
            pos += n;
            v->remaining -= n;
            if (!v->remaining) {
                if (v->stage == GOT_LENGTH_BODY) complete = 1;
                else v->stage = GOT_CHUNK_END;
            }
        } else if (v->stage == GOT_CHUNK_END) {
            if (avail < 2) break;
            pos += 2;
            v->stage = GOT_CHUNK_SIZE;
        } else if (v->stage == GOT_CHUNK_SIZE) {
            char *eol = memmem(p, avail, "\r\n", 2);
            if (!eol) break;
            v->remaining = strtol(p, NULL, 16);
            pos += eol - p + 2;
            v->stage = v->remaining ? GOT_CHUNK_DATA : GOT_TRAILER;
        } else { /* GOT_TRAILER: lines until an empty one */
            char *eol = memmem(p, avail, "\r\n", 2);
            if (!eol) break;
            pos += eol - p + 2;
            if (eol == p) complete = 1;
        }
    }
    memmove(v->buf, v->buf + pos, v->blen - pos);
    v->blen -= pos;
    return complete;
}

#define PART_HEAD_READ 2048

/* A part's body is only counted, so its bytes are received and dropped in the kernel
 * (MSG_TRUNC) instead of copied out: about a third of this client's CPU per part, which on
 * the shared cores belongs to the system under test. Only when nothing of the response is
 * buffered; returns -1 closed or failed, 0 nothing to take now, 1 progress. */
static int discard(Viewer *v) {
    ssize_t n = recv(v->fd, NULL, v->remaining, MSG_TRUNC | MSG_DONTWAIT);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    v->got += n;
    v->remaining -= n;
    if (!v->remaining) v->stage = v->stage == GOT_LENGTH_BODY ? GOT_ALL : GOT_CHUNK_END;
    return 1;
}

/* A response is complete: act on it (which may send the next request, whose answer may be
 * buffered already). 0 when this connection is done with. */
static int answered(Viewer *v) {
    int closing = v->close_after;
    if (closing) close_conn(v);
    on_response(v);
    return v->fd >= 0 && !closing;
}

/* Reads until a read comes back short (the socket is drained) or a sized body is discarded:
 * epoll is level-triggered, so whatever arrives later (the answer to the request just sent)
 * is reported again, and reading on to EAGAIN would cost a syscall per response for nothing. */
static void on_readable(Viewer *v) {
    for (;;) {
        if (v->busy && !v->keep_body && !v->blen && v->remaining > 0 &&
            (v->stage == GOT_LENGTH_BODY || v->stage == GOT_CHUNK_DATA)) {
            int r = discard(v);
            if (r < 0) {
                on_failure(v, "ConnectionError");
                return;
            }
            if (r == 0) return;
            if (v->stage == GOT_ALL) {
                if (parse_input(v) && !answered(v)) return;
                if (!v->blen) return;
            }
            continue;
        }
        if (v->bcap - v->blen < 65536) {
            v->bcap = v->blen + 65536;
            v->buf = xrealloc(v->buf, v->bcap);
        }
        /* A part's head is read on its own (a Varnish or origin head is a few hundred bytes),
         * so that its body is left in the kernel for discard() instead of copied out here. */
        size_t room = v->bcap - v->blen;
        if (v->busy && !v->keep_body && v->stage == GOT_HEAD && room > PART_HEAD_READ)
            room = PART_HEAD_READ;
        ssize_t n = read(v->fd, v->buf + v->blen, room);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            if (v->busy) on_failure(v, "ConnectionError");
            else close_conn(v); /* idle keep-alive closed: reconnect on the next request */
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        v->blen += n;
        while (v->busy && parse_input(v))
            if (!answered(v)) return;
        if (!v->busy && v->blen) { /* bytes nobody asked for */
            on_failure(v, "ProtocolError");
            return;
        }
        if ((size_t)n < room) return; /* drained: epoll reports what comes next */
    }
}

static void on_event(Viewer *v, uint32_t events) {
    if (!v->connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(v->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            on_failure(v, err == ECONNREFUSED ? "ConnectionRefusedError" : "OSError");
            return;
        }
        v->connected = 1;
    }
    if (events & EPOLLOUT) {
        int r = flush_out(v);
        if (r < 0) {
            on_failure(v, "ConnectionResetError");
            return;
        }
        watch(v, r == 0);
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(v);
}

/* ---- output ------------------------------------------------------------------------------ */

static void write_json(const char *path, double cpu, double duration) {
    FILE *f = fopen(path, "w");
    if (!f) die("%s: %s", path, strerror(errno));
    fputs("{\"records\": [", f);
    for (int i = 0; i < nviewers; i++) {
        Viewer *v = &viewers[i];
        fputs(i ? ", [" : "[", f);
        for (int j = 0; j < v->nrecs; j++) {
            Record *r = &v->recs[j];
            fprintf(f, "%s[%d, %d, %.6f, %.6f, %d]", j ? ", " : "", r->msn, r->part, r->t_pl,
                    r->t_part, r->size);
        }
        fputc(']', f);
    }
    fputs("], \"errors\": {", f);
    for (int i = 0; i < nerrors; i++)
        fprintf(f, "%s\"%s\": %ld", i ? ", " : "", errors[i].name, errors[i].count);
    fprintf(f, "}, \"cpu\": %.6f, \"duration\": %.3f}\n", cpu, duration);
    fclose(f);
}

static int parse_only(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: %s", path, strerror(errno));
    char *data = NULL;
    size_t len = 0, cap = 0, n;
    do {
        if (cap - len < 4096) data = xrealloc(data, cap = 2 * cap + 4096);
        n = fread(data + len, 1, cap - len, f);
        len += n;
    } while (n);
    fclose(f);
    const Playlist *pl = parsed(data, len);
    printf("{\"parts\": [");
    for (int i = 0; i < pl->nparts; i++)
        printf("%s[%d, %d, \"%s\"]", i ? ", " : "", pl->parts[i].msn, pl->parts[i].part,
               pl->parts[i].uri);
    if (pl->has_hint) printf("], \"hint\": [%d, %d]}\n", pl->hint_msn, pl->hint_part);
    else printf("], \"hint\": null}\n");
    free(data);
    return 0;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--parse")) return parse_only(argv[2]);
    if (argc != 8) die("usage: %s URL BASE FIRST COUNT DURATION RAMP OUT | --parse FILE", argv[0]);
    const char *url = argv[1], *base = argv[2];
    int first = atoi(argv[3]);
    nviewers = atoi(argv[4]);
    double duration = atof(argv[5]), ramp = atof(argv[6]);
    if (strncmp(url, "http://", 7) || strncmp(base, "http://", 7)) die("http:// URLs only");
    const char *hp = url + 7, *slash = strchr(hp, '/');
    if (!slash || (size_t)(slash - hp) >= sizeof hostport) die("bad URL %s", url);
    snprintf(hostport, sizeof hostport, "%.*s", (int)(slash - hp), hp);
    char *colon = strrchr(hostport, ':');
    if (!colon) die("the URL needs a port: %s", url);
    snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
    port = atoi(colon + 1);
    snprintf(url_path, sizeof url_path, "%s", slash);
    const char *bslash = strchr(base + 7, '/');
    if (!bslash) die("bad BASE %s", base);
    snprintf(base_path, sizeof base_path, "%s", bslash);

    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    viewers = calloc(nviewers, sizeof(Viewer));
    double t0 = now_mono(), cpu0 = cpu_seconds();
    stop_at = t0 + duration;
    for (int i = 0; i < nviewers; i++) {
        viewers[i].id = first + i;
        viewers[i].fd = -1;
        viewers[i].kind = REQ_START;
        viewers[i].wake_at = t0 + ramp * i / (nviewers > 1 ? nviewers : 1);
    }
    active = nviewers;
    int sleeping = nviewers;
    double hard_stop = stop_at + 30; /* a request that never ends must not keep us forever */
    struct epoll_event evs[256];
    while (active > 0) {
        double t = now_mono();
        if (t > hard_stop) break;
        double next_wake = hard_stop;
        if (sleeping) {
            sleeping = 0;
            for (int i = 0; i < nviewers; i++) {
                Viewer *v = &viewers[i];
                if (v->done || v->wake_at <= 0) continue;
                if (v->wake_at <= t) {
                    v->wake_at = 0;
                    next_step(v); /* or finish(), past stop_at */
                }
                if (v->wake_at > 0) {
                    sleeping++;
                    if (v->wake_at < next_wake) next_wake = v->wake_at;
                }
            }
        }
        if (!active) break; /* the last ones were due to stop */
        int timeout = (int)((next_wake - now_mono()) * 1000) + 1;
        if (timeout < 0) timeout = 0;
        int n = epoll_wait(epfd, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            Viewer *v = evs[i].data.ptr;
            if (v->fd < 0) continue; /* closed by an earlier event of this batch */
            int was_sleeping = v->wake_at > 0;
            on_event(v, evs[i].events);
            if (!was_sleeping && v->wake_at > 0) sleeping++;
        }
    }
    write_json(argv[7], cpu_seconds() - cpu0, duration);
    return 0;
}
