/* Bump allocator: a list of chunks; reset rewinds to the first chunk and
 * frees only the oversized ones made for single huge requests. */
#include <stdint.h>
#include <stdlib.h>

#include "stream/arena.h"
#include "stream/error.h"

struct chunk {
    struct chunk *next;
    size_t size, used;
    unsigned char data[];
};

struct sp_arena {
    struct chunk *head, *cur;
    size_t chunk;
};

static struct chunk *chunk_new(size_t size) {
    struct chunk *c = sp_xmalloc(sizeof *c + size);
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

sp_arena *sp_arena_new(size_t chunk) {
    sp_arena *a = sp_xcalloc(1, sizeof *a);
    a->chunk = chunk ? chunk : 1 << 20;
    a->head = a->cur = chunk_new(a->chunk);
    return a;
}

void sp_arena_destroy(sp_arena *a) {
    if (!a) return;
    for (struct chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(a);
}

void *sp_arena_alloc(sp_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    for (;;) {
        struct chunk *c = a->cur;
        size_t at = (c->used + 15) & ~(size_t)15;
        if (at + n <= c->size) {
            c->used = at + n;
            return c->data + at;
        }
        if (!c->next) c->next = chunk_new(n > a->chunk ? n : a->chunk);
        a->cur = c->next;
        a->cur->used = 0;
    }
}

void sp_arena_reset(sp_arena *a) {
    /* Oversized chunks (made for one big request) are not kept. */
    struct chunk **pp = &a->head->next;
    while (*pp) {
        if ((*pp)->size > a->chunk) {
            struct chunk *big = *pp;
            *pp = big->next;
            free(big);
        } else {
            pp = &(*pp)->next;
        }
    }
    a->cur = a->head;
    a->head->used = 0;
}

size_t sp_arena_bytes(const sp_arena *a) {
    size_t n = 0;
    for (const struct chunk *c = a->head; c; c = c->next) n += c->size;
    return n;
}
