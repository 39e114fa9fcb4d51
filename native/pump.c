// The gateway's byte pump: moves the bytes of spliced TCP connections both ways on one thread of
// its own, with epoll, recv(2)/send(2) and splice(2), until both sides have closed, and reports
// each connection to JavaScript once it is over. Every decision (accept, ClientHello, route,
// connect) stays in TypeScript; this file only moves bytes (src/gateway/pump/native-pump.ts is its
// binding).
//
// Threads and ownership:
// - The JavaScript thread calls init(onReports) once, then start(fdA, fdB, head, id) per
//   connection. start() dup(2)s both fds: the pump owns its copies and closes them exactly once;
//   the caller closes its own (it destroys its net.Sockets; see native-pump.ts for why a dup).
// - closeIdle(group, ms) asks the thread, the same way, to close the connections of one group
//   (one pump object, so one gateway: several may share the process) that moved no byte for `ms`.
//   Each connection keeps the time of its last bytes, from a clock read once per epoll round.
// - start() hands the connection to the pump thread through `incoming` (mutex + eventfd); only
//   the pump thread touches epoll and the live connections after that.
// - A connection that is over goes on `done`; when `done` turns non-empty the thread signals the
//   one threadsafe function, and JavaScript takes every report gathered by then as one array.
//   The connection's own struct carries its report (no ring to overflow, nothing dropped) and is
//   freed on the JavaScript thread once reported.
// - Allocation: one calloc per connection (struct + head bytes), nothing per packet.
// - Pipes: a direction holds a pipe only while it moves bytes. One whose source has nothing more
//   to read and whose pipe is empty gives it back to the thread's pool of spare pipes (as
//   HAProxy's pipe pool), and takes one again, from the pool, with its next bytes: no syscall
//   either way. So an idle connection costs its two fds, not six (a pipe pair per direction
//   would be four more: 10,000 idle connections would need 60,000 fds).
//
// Epoll is edge-triggered and each socket is registered once, for EPOLLIN | EPOLLOUT | EPOLLRDHUP:
// an event on a socket runs the direction that reads from it (bytes or a FIN came) and, when it
// waits for room, the direction that writes to it, each until it is blocked on something that
// will raise a new edge (its source has no data: EPOLLIN; its destination is full: EPOLLOUT) or is
// finished. A short recv(2) counts as "no data": what comes after it raises a new edge. A direction
// whose destination is full stops reading its source, so the source's kernel buffer fills and
// TCP's window closes: that is the back-pressure, with no epoll_ctl per blocked write (a
// level-triggered loop would have to re-arm EPOLLOUT and mask EPOLLIN instead).
//
// Small records (a request, an answer) go through one buffer of the thread's with recv(2) and
// send(2); what the destination does not take waits in the direction's pipe (a write(2) into it, a copy).
// A read that fills the buffer moves the direction to splice(2), socket to pipe to socket, with no
// copy, until a splice comes back short.
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { A = 0, B = 1 };
/** A pipe's default capacity (16 pages): the most one splice moves into it. */
#define PIPE_BYTES 65536
#define MAX_EVENTS 64
/** Moves one direction may do per turn (1 MiB of splices), so that a bulk stream cannot starve the rest. */
#define TURN_SPLICES 16
/**
 * Reads of up to this much go through the thread's buffer with recv(2)/send(2): for a small record
 * two copies cost less than a splice's pipe bookkeeping. A read that fills it moves the direction to
 * splice(2) until a splice comes back shorter than this.
 */
#define SMALL_BYTES 16384

struct conn;

/** One socket of a connection; epoll's data.ptr points here. */
struct end {
  struct conn *c;
  int fd;
  int side; /* A or B */
};

/** One direction, from end[side] to end[!side], through a pipe while it has bytes to move. */
struct dir {
  int pipe[2];     /* [0] read end, [1] write end; -1: none held (see give_pipe) */
  size_t inpipe;   /* bytes in the pipe not yet written to the destination */
  uint64_t bytes;  /* read from the source (plus, A to B, the head) */
  double first_ms; /* when the first byte was read from the source; 0: none */
  int eof;         /* the source sent FIN */
  int shut;        /* FIN passed on (shutdown(SHUT_WR) of the destination): direction done */
  int bulk;        /* reading with splice(2) (the last read filled SMALL_BYTES); else recv(2) */
  int blocked;     /* the destination took less than offered: waits for its EPOLLOUT */
  int hup;         /* the source's FIN (or an error) was signalled: read it to the end */
  /* Out of fds for a pipe: what the destination did not take of a small read, kept here. */
  char *spill;
  size_t spill_len, spill_off;
};

struct conn {
  struct conn *prev, *next; /* the thread's live list; then `incoming` or `done` (next only) */
  struct end end[2];
  struct dir dir[2]; /* dir[A]: A to B; dir[B]: B to A */
  double id;
  double group;
  double last_ms; /* when bytes last moved (either way), from the thread's round clock */
  int over;
  int again;               /* on the thread's list of connections to run again, work left */
  struct conn *again_next;
  char closed_by;  /* 'a', 'b', 'l' (closed on request: closeIdle) or 'e' (the pump itself) */
  const char *how; /* "fin", "reset", "error", "idle" (closeIdle with ms > 0), "closed" (ms 0) */
  int err;
  double closed_ms;
  size_t head_len, head_off; /* bytes for B, written before anything read from A */
  char head[];
};

/** A closeIdle() request, from the JavaScript thread to the pump thread. */
struct close_req {
  struct close_req *next;
  double group, idle_ms;
};

/** Spare pipes kept for reuse by the pump thread (two fds each). */
#define SPARE_PIPES 256

/** One per Node environment (instance data). */
struct pump {
  napi_threadsafe_function tsfn;
  pthread_t thread;
  int started, stopped; /* JavaScript thread only */
  int epfd, evfd;
  pthread_mutex_t mu; /* guards incoming, closes, done_*, quitting */
  struct conn *incoming;
  struct close_req *closes;
  struct conn *done_head, *done_tail;
  int quitting;
  struct conn *live; /* pump thread only */
  double round_ms;   /* pump thread only: the time this epoll round began */
  int spare[SPARE_PIPES][2]; /* pump thread only: empty pipes, spare_n of them */
  int spare_n;
  uint32_t open;     /* JavaScript thread only: started and not yet reported */
  char buf[SMALL_BYTES]; /* pump thread only: the small reads' buffer, written out before the next */
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts); /* the same clock as Date.now() */
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/** Closes with a reset (RST) rather than a FIN, so the peer does not take it for a clean end. */
static void reset_fd(int *fd) {
  struct linger l = {1, 0};
  if (*fd >= 0) setsockopt(*fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close_fd(fd);
}

// ---- the pump thread ----

/** Gives `d` a pipe (a spare one, or a new one): 0, or an errno (EMFILE and the like). */
static int take_pipe(struct pump *p, struct dir *d) {
  if (d->pipe[0] >= 0) return 0;
  if (p->spare_n > 0) {
    p->spare_n--;
    d->pipe[0] = p->spare[p->spare_n][0];
    d->pipe[1] = p->spare[p->spare_n][1];
    return 0;
  }
  return pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0 ? errno : 0;
}

/** `d`'s pipe back to the spares when it is empty (closed when the pool is full or it is not). */
static void give_pipe(struct pump *p, struct dir *d) {
  if (d->pipe[0] < 0) return;
  if (d->inpipe == 0 && p->spare_n < SPARE_PIPES) {
    p->spare[p->spare_n][0] = d->pipe[0];
    p->spare[p->spare_n][1] = d->pipe[1];
    p->spare_n++;
    d->pipe[0] = d->pipe[1] = -1;
    return;
  }
  close_fd(&d->pipe[0]);
  close_fd(&d->pipe[1]);
}

/** The connection is over: out of epoll, every fd closed (sockets per `rst`), report filled in. */
static void finish(struct pump *p, struct conn *c, char by, const char *how, int err, int rst_a, int rst_b) {
  c->over = 1;
  c->closed_by = by;
  c->how = how;
  c->err = err;
  c->closed_ms = now_ms();
  for (int s = A; s <= B; s++) {
    /* DEL first: a registration lives as long as the open file description, which the caller's
       own fd may still hold for a moment. */
    if (c->end[s].fd >= 0) epoll_ctl(p->epfd, EPOLL_CTL_DEL, c->end[s].fd, NULL);
    if (s == A ? rst_a : rst_b) reset_fd(&c->end[s].fd);
    else close_fd(&c->end[s].fd);
    give_pipe(p, &c->dir[s]);
    free(c->dir[s].spill);
    c->dir[s].spill = NULL;
  }
  if (c->prev) c->prev->next = c->next;
  else p->live = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

/** A read or write on end[side] failed with `err`: the connection ends, a reset passed on as one. */
static void fail(struct pump *p, struct conn *c, int side, int err) {
  int reset = err == ECONNRESET || err == EPIPE;
  finish(p, c, side == A ? 'a' : 'b', reset ? "reset" : "error", err, reset && side == B, reset && side == A);
}

/**
 * Copies `len` bytes of the thread's buffer into `d`'s (empty) pipe: what its destination did not
 * take. 0, or an errno. A write(2), not vmsplice(2): that would lend the pipe the buffer's pages,
 * which the next read overwrites. Out of fds for a pipe, into a spill of the direction's own (the
 * one allocation on a connection's way, and only then).
 */
static int park(struct pump *p, struct dir *d, const char *from, size_t len) {
  if (take_pipe(p, d)) {
    /* No fd for a pipe (EMFILE, ENFILE): a copy of its own, until the destination takes it. */
    d->spill = malloc(len);
    if (!d->spill) return ENOMEM;
    memcpy(d->spill, from, len);
    d->spill_len = len;
    d->spill_off = 0;
    return 0;
  }
  while (len > 0) {
    /* The pipe is empty and holds at least 16 pages: SMALL_BYTES always fits. */
    ssize_t n = write(d->pipe[1], from, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    from += n;
    len -= (size_t)n;
    d->inpipe += (size_t)n;
  }
  return 0;
}

/**
 * Moves what it can of one direction, until blocked (a new edge will come) or done: 0; or until
 * its turn is up, with work left: 1 (no edge will come for that, so the thread runs it again).
 * `drain`: read the source until it has nothing (EAGAIN); else a short recv(2) ends the turn, as
 * it says the socket had no more: bytes that come after it raise a new edge (a FIN that came with
 * the last bytes raised EPOLLRDHUP, and the caller drains then).
 */
static int run_dir(struct pump *p, struct conn *c, int side, int drain) {
  struct dir *d = &c->dir[side];
  int src = c->end[side].fd, dst = c->end[!side].fd;
  ssize_t n;
  drain |= d->hup;
  while (side == A && c->head_off < c->head_len) {
    n = send(dst, c->head + c->head_off, c->head_len - c->head_off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EAGAIN ? (d->blocked = 1, 0) : (fail(p, c, B, errno), 0);
    c->head_off += (size_t)n;
  }
  d->blocked = 0;
  for (int turn = 0; !d->shut; turn++) {
    if (turn == TURN_SPLICES) return 1;
    if (d->spill) {
      n = send(dst, d->spill + d->spill_off, d->spill_len - d->spill_off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno == EAGAIN ? (d->blocked = 1, 0) : (fail(p, c, !side, errno), 0);
      d->spill_off += (size_t)n;
      if (d->spill_off == d->spill_len) {
        free(d->spill);
        d->spill = NULL;
      }
    } else if (d->inpipe > 0) {
      n = splice(d->pipe[0], NULL, dst, NULL, d->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno == EAGAIN ? (d->blocked = 1, 0) : (fail(p, c, !side, errno), 0);
      d->inpipe -= (size_t)n;
    } else if (d->eof) {
      /* Half-close: the other direction goes on. An error here (the peer is gone) shows up there. */
      shutdown(dst, SHUT_WR);
      d->shut = 1;
      give_pipe(p, d);
    } else if (!d->bulk) {
      give_pipe(p, d); /* empty: a small read needs none */
      n = recv(src, p->buf, SMALL_BYTES, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return 0;
      if (n < 0) return fail(p, c, side, errno), 0;
      if (n == 0) {
        d->eof = 1;
        if (!c->closed_by) c->closed_by = side == A ? 'a' : 'b'; /* who ended first */
        continue;
      }
      if (d->first_ms == 0) d->first_ms = now_ms();
      c->last_ms = p->round_ms;
      d->bytes += (uint64_t)n;
      ssize_t m;
      do m = send(dst, p->buf, (size_t)n, MSG_NOSIGNAL);
      while (m < 0 && errno == EINTR);
      if (m < 0 && errno != EAGAIN) return fail(p, c, !side, errno), 0;
      if (m < 0) m = 0;
      if (m < n) {
        /* The rest waits in the direction's pipe (the buffer is the next read's) for EPOLLOUT. */
        int err = park(p, d, p->buf + m, (size_t)(n - m));
        /* Bytes lost: both sides reset, so neither takes what it got for the whole. */
        if (err) return finish(p, c, 'e', "error", err, 1, 1), 0;
        continue;
      }
      if (n == SMALL_BYTES) d->bulk = 1;
      else if (!drain) return 0;
    } else {
      if (take_pipe(p, d)) {
        /* No fd for a pipe (EMFILE, ENFILE): through the thread's buffer, which needs none. */
        d->bulk = 0;
        continue;
      }
      /* The pipe is empty, so EAGAIN can only mean the socket has nothing to read. */
      n = splice(src, NULL, d->pipe[1], NULL, PIPE_BYTES, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return give_pipe(p, d), 0; /* nothing to move: no pipe held */
      if (n < 0) return fail(p, c, side, errno), 0;
      if (n == 0) {
        d->eof = 1;
        if (!c->closed_by) c->closed_by = side == A ? 'a' : 'b';
        continue;
      }
      if (n < SMALL_BYTES) d->bulk = 0;
      if (d->first_ms == 0) d->first_ms = now_ms();
      c->last_ms = p->round_ms;
      d->bytes += (uint64_t)n;
      d->inpipe = (size_t)n;
    }
  }
  return 0;
}

/** Work for a direction: bytes or a FIN to read from its source. */
#define RUN_READ 1
/** Room in its destination: it runs if it waits for that. */
#define RUN_WRITE 2
/** Read its source to EAGAIN (a FIN or an error on it, or a turn that ran out). */
#define RUN_DRAIN 4

/**
 * Runs the directions `what` says (per direction, RUN_* bits); a connection over goes on `over`,
 * one with work left on `again`.
 */
static void run_conn(struct pump *p, struct conn *c, const int what[2], struct conn **over, struct conn **again) {
  int more = 0;
  for (int s = A; s <= B && !c->over; s++) {
    struct dir *d = &c->dir[s];
    if (d->shut) continue;
    /* A blocked direction reads nothing until its destination has room; a write edge runs it. */
    int go = d->blocked ? (what[s] & (RUN_WRITE | RUN_DRAIN)) : (what[s] & (RUN_READ | RUN_DRAIN));
    if (go) more |= run_dir(p, c, s, what[s] & RUN_DRAIN);
  }
  if (!c->over && c->dir[A].shut && c->dir[B].shut) finish(p, c, c->closed_by, "fin", 0, 0, 0);
  if (c->over) {
    c->next = *over;
    *over = c;
  } else if (more && !c->again) {
    c->again = 1;
    c->again_next = *again;
    *again = c;
  }
}

/** New connections from start(): into the live list and epoll. */
static void take_incoming(struct pump *p, struct conn **over) {
  pthread_mutex_lock(&p->mu);
  struct conn *list = p->incoming;
  p->incoming = NULL;
  pthread_mutex_unlock(&p->mu);
  while (list) {
    struct conn *c = list;
    list = c->next;
    c->prev = NULL;
    c->last_ms = p->round_ms;
    c->dir[A].blocked = c->head_len > 0; /* the head waits for B's first EPOLLOUT (registering raises it) */
    c->next = p->live;
    if (p->live) p->live->prev = c;
    p->live = c;
    for (int s = A; s <= B; s++) {
      /* Registering reports what is ready already (EPOLLOUT at least), which starts the moving. */
      struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &c->end[s]};
      if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, c->end[s].fd, &ev) < 0 && !c->over) {
        finish(p, c, 'e', "error", errno, 0, 0);
      }
    }
    if (c->over) {
      c->next = *over;
      *over = c;
    }
  }
}

/** closeIdle() requests: each closes its group's connections idle for its time (all, for 0). */
static void take_closes(struct pump *p, struct conn **over) {
  pthread_mutex_lock(&p->mu);
  struct close_req *list = p->closes;
  p->closes = NULL;
  pthread_mutex_unlock(&p->mu);
  while (list) {
    struct close_req *r = list;
    list = r->next;
    for (struct conn *c = p->live, *next; c; c = next) {
      next = c->next; /* finish() takes c off the live list */
      if (c->group != r->group || c->last_ms > p->round_ms - r->idle_ms) continue;
      finish(p, c, 'l', r->idle_ms > 0 ? "idle" : "closed", 0, 0, 0);
      c->next = *over;
      *over = c;
    }
    free(r);
  }
}

/** Hands connections that are over to JavaScript; signals when `done` was empty. */
static void report(struct pump *p, struct conn *over) {
  if (!over) return;
  pthread_mutex_lock(&p->mu);
  int signal = p->done_head == NULL;
  while (over) {
    struct conn *c = over;
    over = c->next;
    c->next = NULL;
    if (p->done_tail) p->done_tail->next = c;
    else p->done_head = c;
    p->done_tail = c;
  }
  pthread_mutex_unlock(&p->mu);
  if (signal) napi_call_threadsafe_function(p->tsfn, NULL, napi_tsfn_nonblocking);
}

static void *pump_thread(void *arg) {
  struct pump *p = arg;
  struct epoll_event evs[MAX_EVENTS];
  struct conn *again = NULL;
  for (int quit = 0; !quit;) {
    /* With work left over from the last round, only a look at what else is ready. */
    int n = epoll_wait(p->epfd, evs, MAX_EVENTS, again ? 0 : -1);
    if (n < 0 && errno != EINTR) break;
    p->round_ms = now_ms();
    /* Connections over in this round are reported after it: JavaScript may free one as soon as
       it is reported, and a later event of this round may still name it. */
    struct conn *over = NULL, *rerun = again;
    again = NULL;
    for (struct conn *c; (c = rerun) != NULL;) {
      rerun = c->again_next;
      c->again = 0;
      static const int all[2] = {RUN_DRAIN, RUN_DRAIN};
      if (!c->over) run_conn(p, c, all, &over, &again);
    }
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) { /* the eventfd: new work, or quit */
        uint64_t v;
        (void)!read(p->evfd, &v, sizeof v); /* resets the counter; EAGAIN: another round took it */
        pthread_mutex_lock(&p->mu);
        quit = p->quitting;
        pthread_mutex_unlock(&p->mu);
        take_incoming(p, &over);
        if (!quit) take_closes(p, &over);
        continue;
      }
      struct end *e = evs[i].data.ptr;
      struct conn *c = e->c;
      if (c->over || quit) continue;
      if (evs[i].events & EPOLLERR) {
        /* A reset (or other error) on a socket no direction is reading or writing just now. */
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
          fail(p, c, e->side, err);
          c->next = over;
          over = c;
          continue;
        }
      }
      /* The socket's events say which directions have work: the one reading from it, when it has
         bytes or a FIN, and the one writing to it, when that waits for room. */
      uint32_t ev = evs[i].events;
      int what[2] = {0, 0};
      /* Sticky: the FIN's edge may come while its direction is blocked, and not come again. */
      if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->dir[e->side].hup = 1;
      if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) what[e->side] = RUN_READ;
      if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) what[!e->side] = RUN_WRITE | (ev & (EPOLLHUP | EPOLLERR) ? RUN_DRAIN : 0);
      run_conn(p, c, what, &over, &again);
    }
    /* One queued to run again may have ended since: it goes with its report, not on this list. */
    for (struct conn **q = &again; *q;) {
      if ((*q)->over) *q = (*q)->again_next;
      else q = &(*q)->again_next;
    }
    if (!quit) {
      report(p, over);
      continue;
    }
    /* The environment is going away: whatever is still open is closed, nothing is reported. */
    while (p->live) {
      struct conn *c = p->live;
      finish(p, c, 'e', "error", 0, 0, 0);
      free(c);
    }
    while (over) {
      struct conn *c = over;
      over = c->next;
      free(c);
    }
    while (p->spare_n > 0) {
      p->spare_n--;
      close(p->spare[p->spare_n][0]);
      close(p->spare[p->spare_n][1]);
    }
  }
  return NULL;
}

// ---- the JavaScript thread ----

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[128];
  snprintf(msg, sizeof msg, "pump: %s: %s", what, strerror(err));
  napi_throw_error(env, "ISTHMUS_ERR_INTERNAL", msg);
  return NULL;
}

static void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

static void set_str(napi_env env, napi_value obj, const char *key, const char *v) {
  napi_value s;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, obj, key, s);
}

/** The threadsafe function's call: every report gathered so far, as one array, to onReports. */
static void call_js(napi_env env, napi_value fn, void *context, void *data) {
  (void)data;
  struct pump *p = context;
  pthread_mutex_lock(&p->mu);
  struct conn *list = p->done_head;
  p->done_head = p->done_tail = NULL;
  pthread_mutex_unlock(&p->mu);
  if (!list) return; /* taken by an earlier call */
  napi_value arr = NULL, undef;
  if (env) {
    napi_get_undefined(env, &undef);
    napi_create_array(env, &arr);
  }
  uint32_t i = 0;
  while (list) {
    struct conn *c = list;
    list = c->next;
    if (env) {
      napi_value o;
      napi_create_object(env, &o);
      set_num(env, o, "id", c->id);
      set_num(env, o, "bytesAtoB", (double)c->dir[A].bytes);
      set_num(env, o, "bytesBtoA", (double)c->dir[B].bytes);
      for (int s = A; s <= B; s++) {
        const char *key = s == A ? "firstByteAtoBMs" : "firstByteBtoAMs";
        if (c->dir[s].first_ms) set_num(env, o, key, c->dir[s].first_ms);
        else napi_set_named_property(env, o, key, undef);
      }
      set_num(env, o, "closedAtMs", c->closed_ms);
      set_str(env, o, "closedBy", c->closed_by == 'a' ? "a" : c->closed_by == 'b' ? "b" : c->closed_by == 'l' ? "local" : "error");
      set_str(env, o, "how", c->how);
      set_num(env, o, "errno", c->err);
      napi_set_element(env, arr, i++, o);
    }
    free(c);
    if (p->open > 0 && --p->open == 0 && env) napi_unref_threadsafe_function(env, p->tsfn);
  }
  if (env) napi_call_function(env, undef, fn, 1, &arr, NULL);
}

/** Environment teardown, before the threadsafe function's own: the thread stops and closes all. */
static void cleanup(void *arg) {
  struct pump *p = arg;
  if (!p->started) return;
  pthread_mutex_lock(&p->mu);
  p->quitting = 1;
  pthread_mutex_unlock(&p->mu);
  uint64_t one = 1;
  if (write(p->evfd, &one, sizeof one) == sizeof one) pthread_join(p->thread, NULL);
  close(p->epfd);
  close(p->evfd);
}

/** The threadsafe function is gone (teardown): the last use of `p`. */
static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct pump *p = data;
  while (p->closes) {
    struct close_req *r = p->closes;
    p->closes = r->next;
    free(r);
  }
  while (p->done_head) {
    struct conn *c = p->done_head;
    p->done_head = c->next;
    free(c);
  }
  pthread_mutex_destroy(&p->mu);
  free(p);
}

static struct pump *get_pump(napi_env env) {
  void *p = NULL;
  napi_get_instance_data(env, &p);
  return p;
}

/** init(onReports): once per environment, before start(). */
static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value fn, name;
  napi_get_cb_info(env, info, &argc, &fn, NULL, NULL);
  if (get_pump(env)) return napi_throw_error(env, "ISTHMUS_ERR_INTERNAL", "pump: init() was called already"), NULL;
  struct pump *p = calloc(1, sizeof *p);
  if (!p) return throw_errno(env, "init", ENOMEM);
  pthread_mutex_init(&p->mu, NULL);
  p->epfd = p->evfd = -1;
  napi_create_string_utf8(env, "isthmus pump reports", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, fn, NULL, name, 0, 1, p, finalize, p, call_js, &p->tsfn) != napi_ok) {
    free(p);
    return NULL; /* the exception is pending */
  }
  /* Unreferenced while nothing is open; start() refs it, so open connections keep Node alive. */
  napi_unref_threadsafe_function(env, p->tsfn);
  napi_set_instance_data(env, p, NULL, NULL);
  /* Added after the threadsafe function, so it runs before that one's teardown (hooks run LIFO). */
  napi_add_env_cleanup_hook(env, cleanup, p);
  return NULL;
}

/** The lazy start of the pump thread. 0, or an errno. */
static int start_thread(struct pump *p) {
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) return errno;
  p->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  int err = p->evfd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev) < 0 ? errno : 0;
  if (!err) err = pthread_create(&p->thread, NULL, pump_thread, p);
  if (err) {
    close_fd(&p->epfd);
    close_fd(&p->evfd);
    return err;
  }
  p->started = 1;
  return 0;
}

/** A non-blocking, close-on-exec copy of `fd`, or -1. (libuv's sockets are non-blocking already.) */
static int dup_fd(int fd) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return -1;
  int fl = fcntl(d, F_GETFL);
  if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(d, F_SETFL, fl | O_NONBLOCK) < 0)) close_fd(&d);
  return d;
}

/** start(fdA, fdB, headForB: Buffer | undefined, id: number, group?: number) */
static napi_value js_start(napi_env env, napi_callback_info info) {
  struct pump *p = get_pump(env);
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (!p) return napi_throw_error(env, "ISTHMUS_ERR_INTERNAL", "pump: start() before init()"), NULL;
  if (p->stopped) return napi_throw_error(env, "ISTHMUS_ERR_UNAVAILABLE", "pump: stopped, takes no new connections"), NULL;
  int32_t fd[2];
  double id, group = 0;
  void *head = NULL;
  size_t head_len = 0;
  bool is_buf = false;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &fd[A]) != napi_ok || napi_get_value_int32(env, argv[1], &fd[B]) != napi_ok ||
      napi_get_value_double(env, argv[3], &id) != napi_ok || fd[A] < 0 || fd[B] < 0)
    return napi_throw_type_error(env, NULL, "pump: start(fdA, fdB, head, id) takes two fds >= 0 and a number id"), NULL;
  if (argc >= 5 && napi_get_value_double(env, argv[4], &group) != napi_ok)
    return napi_throw_type_error(env, NULL, "pump: start()'s group must be a number"), NULL;
  napi_is_buffer(env, argv[2], &is_buf);
  if (is_buf) napi_get_buffer_info(env, argv[2], &head, &head_len);
  if (!p->started) {
    int err = start_thread(p);
    if (err) return throw_errno(env, "starting the pump thread", err);
  }
  struct conn *c = calloc(1, sizeof *c + head_len);
  if (!c) return throw_errno(env, "start", ENOMEM);
  c->id = id;
  c->group = group;
  c->head_len = head_len;
  if (head_len) memcpy(c->head, head, head_len);
  int err = 0;
  for (int s = A; s <= B; s++) {
    c->end[s] = (struct end){.c = c, .fd = dup_fd(fd[s]), .side = s};
    c->dir[s].pipe[0] = c->dir[s].pipe[1] = -1; /* taken on the pump thread, with the first bytes */
    if (c->end[s].fd < 0 && !err) err = errno;
  }
  c->dir[A].bytes = head_len;
  if (err) {
    for (int s = A; s <= B; s++) close_fd(&c->end[s].fd);
    free(c);
    return throw_errno(env, "start", err); /* EMFILE and the like: the caller's fds are untouched */
  }
  pthread_mutex_lock(&p->mu);
  /* A list that was not empty has its wake-up on the way: the thread reads the eventfd, then takes
     the whole list. */
  int wake = p->incoming == NULL;
  c->next = p->incoming;
  p->incoming = c;
  pthread_mutex_unlock(&p->mu);
  uint64_t one = 1;
  if (wake && write(p->evfd, &one, sizeof one) < 0 && errno != EAGAIN) abort(); /* cannot happen: counter far from max */
  if (p->open++ == 0) napi_ref_threadsafe_function(env, p->tsfn);
  return NULL;
}

/** closeIdle(group, ms): closes the group's connections that moved no byte for `ms` (0: all of them). */
static napi_value js_close_idle(napi_env env, napi_callback_info info) {
  struct pump *p = get_pump(env);
  size_t argc = 2;
  napi_value argv[2];
  double group, idle_ms;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_double(env, argv[0], &group) != napi_ok || napi_get_value_double(env, argv[1], &idle_ms) != napi_ok ||
      !(idle_ms >= 0))
    return napi_throw_type_error(env, NULL, "pump: closeIdle(group, ms) takes a number group and ms >= 0"), NULL;
  if (!p || !p->started) return NULL; /* nothing was ever started */
  struct close_req *r = malloc(sizeof *r);
  if (!r) return throw_errno(env, "closeIdle", ENOMEM);
  r->group = group;
  r->idle_ms = idle_ms;
  pthread_mutex_lock(&p->mu);
  r->next = p->closes;
  p->closes = r;
  pthread_mutex_unlock(&p->mu);
  uint64_t one = 1;
  if (write(p->evfd, &one, sizeof one) < 0 && errno != EAGAIN) abort();
  return NULL;
}

/** stop(): no new connection from now on; the open ones go on until they close. Returns how many. */
static napi_value js_stop(napi_env env, napi_callback_info info) {
  (void)info;
  struct pump *p = get_pump(env);
  napi_value n;
  if (p) p->stopped = 1;
  napi_create_uint32(env, p ? p->open : 0, &n);
  return n;
}

/** open(): connections started and not yet reported. */
static napi_value js_open(napi_env env, napi_callback_info info) {
  (void)info;
  struct pump *p = get_pump(env);
  napi_value n;
  napi_create_uint32(env, p ? p->open : 0, &n);
  return n;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_enumerable, NULL},
      {"start", NULL, js_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeIdle", NULL, js_close_idle, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stop", NULL, js_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
