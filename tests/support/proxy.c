/* The reply-dropping TCP proxy of proxy.h: one thread, poll() over the
 * listening socket and up to MAXC client/server pairs. */
#include "tests/support/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 16

struct pair {
    int cfd, sfd;   /* client side, server side; -1 when free */
    int drop_next;  /* the next server bytes are swallowed */
};

struct sp_t_proxy {
    int lfd, port, target;
    pthread_t thread;
    pthread_mutex_t mu;
    char needle[64];
    int armed, dropped;
    char ineedle[64];
    int iarmed, ilines, interposed;
    void (*ifn)(void *);
    void *iarg;
    volatile int stop;
    struct pair c[MAXC];
};

static int connect_target(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

static void pair_close(struct pair *q) {
    if (q->cfd >= 0) close(q->cfd);
    if (q->sfd >= 0) close(q->sfd);
    q->cfd = q->sfd = -1;
    q->drop_next = 0;
}

static int write_all(int fd, const char *b, ssize_t n) {
    while (n > 0) {
        ssize_t w = write(fd, b, (size_t)n);
        if (w <= 0) return -1;
        b += w;
        n -= w;
    }
    return 0;
}

/* Moves what is readable on one side of q to the other. */
/* Forwards server bytes to the client until `lines` CRLFs went by (the
 * replies to what was sent before the needle), at most 5 s. */
static int forward_lines(struct pair *q, int lines) {
    char b[4096];
    while (lines > 0) {
        struct pollfd f = {.fd = q->sfd, .events = POLLIN};
        if (poll(&f, 1, 5000) <= 0) return -1;
        ssize_t n = read(q->sfd, b, sizeof b);
        if (n <= 0) return -1;
        for (ssize_t i = 0; i + 1 < n; i++)
            if (b[i] == '\r' && b[i + 1] == '\n') lines--;
        if (write_all(q->cfd, b, n)) return -1;
    }
    return 0;
}

static void pump_side(sp_t_proxy *p, struct pair *q, int from_client) {
    char buf[65536];
    ssize_t n = read(from_client ? q->cfd : q->sfd, buf, sizeof buf);
    if (n <= 0) {
        pair_close(q);
        return;
    }
    pthread_mutex_lock(&p->mu);
    const char *at = from_client && p->iarmed
                         ? memmem(buf, (size_t)n, p->ineedle, strlen(p->ineedle))
                         : NULL;
    if (at) {
        p->iarmed = 0;
        p->interposed++;
        pthread_mutex_unlock(&p->mu);
        ssize_t head = at - buf;
        if (write_all(q->sfd, buf, head) || forward_lines(q, p->ilines)) {
            pair_close(q);
            return;
        }
        p->ifn(p->iarg);
        if (write_all(q->sfd, buf + head, n - head)) pair_close(q);
        return;
    }
    if (from_client && p->armed && memmem(buf, (size_t)n, p->needle, strlen(p->needle))) {
        p->armed = 0;
        q->drop_next = 1;
    }
    int drop = !from_client && q->drop_next;
    if (drop) p->dropped++;
    pthread_mutex_unlock(&p->mu);
    if (drop || write_all(from_client ? q->sfd : q->cfd, buf, n)) pair_close(q);
}

static void *proxy_main(void *arg) {
    sp_t_proxy *p = arg;
    while (!p->stop) {
        struct pollfd fds[1 + 2 * MAXC];
        int idx[1 + 2 * MAXC], n = 0;
        fds[n] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        idx[n++] = -1;
        for (int i = 0; i < MAXC; i++)
            if (p->c[i].cfd >= 0) {
                fds[n] = (struct pollfd){.fd = p->c[i].cfd, .events = POLLIN};
                idx[n++] = 2 * i;
                fds[n] = (struct pollfd){.fd = p->c[i].sfd, .events = POLLIN};
                idx[n++] = 2 * i + 1;
            }
        if (poll(fds, (nfds_t)n, 50) <= 0) continue;
        for (int k = 0; k < n; k++) {
            if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (idx[k] < 0) {
                int cfd = accept(p->lfd, NULL, NULL), slot = -1;
                for (int i = 0; i < MAXC && slot < 0; i++)
                    if (p->c[i].cfd < 0) slot = i;
                int sfd = cfd >= 0 && slot >= 0 ? connect_target(p->target) : -1;
                if (sfd < 0) {
                    if (cfd >= 0) close(cfd);
                    continue;
                }
                p->c[slot] = (struct pair){cfd, sfd, 0};
                continue;
            }
            struct pair *q = &p->c[idx[k] / 2];
            if (q->cfd >= 0) pump_side(p, q, idx[k] % 2 == 0);
        }
    }
    return NULL;
}

sp_t_proxy *sp_t_proxy_start(int target_port) {
    sp_t_proxy *p = calloc(1, sizeof *p);
    for (int i = 0; i < MAXC; i++) p->c[i].cfd = p->c[i].sfd = -1;
    p->target = target_port;
    pthread_mutex_init(&p->mu, NULL);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(p->lfd, (struct sockaddr *)&a, sizeof a) || listen(p->lfd, 16) ||
        getsockname(p->lfd, (struct sockaddr *)&a, &len)) {
        close(p->lfd);
        free(p);
        return NULL;
    }
    p->port = ntohs(a.sin_port);
    pthread_create(&p->thread, NULL, proxy_main, p);
    return p;
}

int sp_t_proxy_port(const sp_t_proxy *p) { return p->port; }

void sp_t_proxy_arm(sp_t_proxy *p, const char *needle) {
    pthread_mutex_lock(&p->mu);
    snprintf(p->needle, sizeof p->needle, "%s", needle);
    p->armed = 1;
    pthread_mutex_unlock(&p->mu);
}

void sp_t_proxy_interpose(sp_t_proxy *p, const char *needle, int lines, void (*fn)(void *),
                          void *arg) {
    pthread_mutex_lock(&p->mu);
    snprintf(p->ineedle, sizeof p->ineedle, "%s", needle);
    p->ilines = lines;
    p->ifn = fn;
    p->iarg = arg;
    p->iarmed = 1;
    pthread_mutex_unlock(&p->mu);
}

int sp_t_proxy_interposed(sp_t_proxy *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->interposed;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int sp_t_proxy_dropped(sp_t_proxy *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->dropped;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void sp_t_proxy_stop(sp_t_proxy *p) {
    if (!p) return;
    p->stop = 1;
    pthread_join(p->thread, NULL);
    for (int i = 0; i < MAXC; i++) pair_close(&p->c[i]);
    close(p->lfd);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
