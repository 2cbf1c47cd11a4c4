#ifndef STREAM_ARENA_H
#define STREAM_ARENA_H

/* A bump allocator for things that live exactly one batch (decoded events):
 * allocation is a pointer bump, and the whole batch is released at once by
 * sp_arena_reset(), which keeps the chunks for the next batch. So the hot
 * path does no malloc/free per event once the arena has grown to the size of
 * a batch. */
#include <stddef.h>

typedef struct sp_arena sp_arena;

sp_arena *sp_arena_new(size_t chunk);
void sp_arena_destroy(sp_arena *a);
void *sp_arena_alloc(sp_arena *a, size_t n); /* 16-byte aligned; aborts on OOM */
void sp_arena_reset(sp_arena *a);
size_t sp_arena_bytes(const sp_arena *a);    /* capacity held */

#endif
