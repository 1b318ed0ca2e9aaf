/* arena.c — bump allocator with mark/reset and a counting (planning) mode. */
#include "arena.h"
#include "common.h"

void arena_init(Arena *a, size_t cap_bytes, const char *name) {
    a->base = flip_malloc(cap_bytes, name);
    a->cap_bytes = cap_bytes;
    a->used_bytes = 0;
    a->peak_bytes = 0;
    a->name = name;
}

void arena_plan_init(Arena *a, const char *name) {
    a->base = NULL;
    a->cap_bytes = (size_t)-1;
    a->used_bytes = 0;
    a->peak_bytes = 0;
    a->name = name;
}

void arena_free(Arena *a) {
    flip_free(a->base);
    a->base = NULL;
    a->cap_bytes = a->used_bytes = a->peak_bytes = 0;
}

void *arena_alloc(Arena *a, size_t n_bytes) {
    size_t start = (a->used_bytes + 63) & ~(size_t)63;
    FLIP_CHECK(start <= a->cap_bytes && n_bytes <= a->cap_bytes - start,
               "arena '%s' exhausted: need %zu bytes at offset %zu, capacity %zu (a planning bug: report it)",
               a->name, n_bytes, start, a->cap_bytes);
    a->used_bytes = start + n_bytes;
    if (a->used_bytes > a->peak_bytes) a->peak_bytes = a->used_bytes;
    return a->base ? a->base + start : NULL;
}

float *arena_floats(Arena *a, size_t count) {
    return arena_alloc(a, flip_mul_size(count, sizeof(float), a->name));
}

size_t arena_mark(const Arena *a) { return a->used_bytes; }

void arena_reset(Arena *a, size_t mark) {
    FLIP_CHECK(mark <= a->used_bytes, "arena '%s': reset to %zu beyond used %zu", a->name, mark, a->used_bytes);
    a->used_bytes = mark;
}
