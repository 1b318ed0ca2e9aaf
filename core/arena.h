/* arena.h — bump allocators. An Arena owns one 64-byte aligned block; slices
 * handed out are borrowed views valid until arena_reset past them or
 * arena_free. Running out is a fatal error naming the arena, never a NULL. */
#ifndef FLIP_ARENA_H
#define FLIP_ARENA_H

#include <stddef.h>

typedef struct {
    char *base;
    size_t cap_bytes;
    size_t used_bytes;
    size_t peak_bytes;
    const char *name;
} Arena;

void arena_init(Arena *a, size_t cap_bytes, const char *name);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n_bytes);      /* 64-byte aligned, not zeroed */
float *arena_floats(Arena *a, size_t count);      /* count floats */
size_t arena_mark(const Arena *a);
void arena_reset(Arena *a, size_t mark);

/* Planning pass: an Arena with base == NULL only counts (arena_alloc returns
 * NULL-offset pointers that must not be used); then arena_init with used_bytes. */
void arena_plan_init(Arena *a, const char *name);

#endif
