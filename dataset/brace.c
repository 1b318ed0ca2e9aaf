/* brace.c — shell-style brace expansion (see brace.h).
 *
 * Expansion is recursive: find the first brace group that is a list or a
 * range, then expand prefix + item + suffix for each item, scanning again from
 * the end of the prefix (so nested groups inside items and later groups in the
 * suffix are expanded too). */
#include "brace.h"

#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void brace_list_push(BraceList *out, const char *s) {
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        char **items = flip_malloc(flip_mul_size(cap, sizeof(char *), "brace list"), "brace list");
        if (out->n) memcpy(items, out->items, out->n * sizeof(char *));
        flip_free(out->items);
        out->items = items;
        out->cap = cap;
    }
    size_t len = strlen(s);
    char *copy = flip_malloc(len + 1, "brace item");
    memcpy(copy, s, len + 1);
    out->items[out->n++] = copy;
}

void brace_list_free(BraceList *list) {
    for (size_t i = 0; i < list->n; i++) flip_free(list->items[i]);
    flip_free(list->items);
    list->items = NULL;
    list->n = list->cap = 0;
}

/* index of the '}' matching the '{' at s[open], or -1 */
static long match_close(const char *s, size_t open) {
    int depth = 0;
    for (size_t i = open; s[i]; i++) {
        if (s[i] == '{') depth++;
        else if (s[i] == '}' && --depth == 0) return (long)i;
    }
    return -1;
}

/* Parses an integer of the range syntax; returns its end or NULL.
 * *width = number of characters (sign included), *zero = leading zero. */
static const char *parse_int(const char *p, const char *end, long long *v, int *width, int *zero) {
    const char *start = p;
    if (p < end && (*p == '-' || *p == '+')) p++;
    const char *digits = p;
    while (p < end && isdigit((unsigned char)*p)) p++;
    if (p == digits || p - digits > 18) return NULL;
    char buf[32];
    memcpy(buf, start, (size_t)(p - start));
    buf[p - start] = 0;
    *v = strtoll(buf, NULL, 10);
    *width = (int)(p - start);
    *zero = (p - digits > 1 && digits[0] == '0');
    return p;
}

/* "A..B" or "A..B..S" with integers; returns 1 and the fields on success */
static int parse_range(const char *p, const char *end, long long *a, long long *b, long long *step,
                       int *width) {
    int wa, wb, za, zb, ws, zs;
    long long s = 1;
    p = parse_int(p, end, a, &wa, &za);
    if (!p || end - p < 2 || p[0] != '.' || p[1] != '.') return 0;
    p = parse_int(p + 2, end, b, &wb, &zb);
    if (!p) return 0;
    if (p != end) {
        if (end - p < 2 || p[0] != '.' || p[1] != '.') return 0;
        p = parse_int(p + 2, end, &s, &ws, &zs);
        if (!p || p != end) return 0;
        if (s < 0) s = -s;
        if (s == 0) s = 1;
    }
    *step = s;
    *width = (za || zb) ? (wa > wb ? wa : wb) : 0;
    return 1;
}

static void check_size(const BraceList *out, const char *pattern) {
    FLIP_CHECK(out->n <= BRACE_MAX_ITEMS,
               "brace pattern '%s' expands to more than %d items; check the range bounds",
               pattern, BRACE_MAX_ITEMS);
}

static void expand_from(BraceList *out, const char *s, size_t from, const char *pattern) {
    size_t len = strlen(s);
    for (size_t i = from; i < len; i++) {
        if (s[i] != '{') continue;
        long close = match_close(s, i);
        if (close < 0) continue; /* unmatched: literal */
        const char *body = s + i + 1, *body_end = s + close;
        /* top-level comma split */
        size_t n_commas = 0;
        int depth = 0;
        for (const char *p = body; p < body_end; p++) {
            if (*p == '{') depth++;
            else if (*p == '}') depth--;
            else if (*p == ',' && depth == 0) n_commas++;
        }
        long long a, b, step;
        int width;
        int is_range = n_commas == 0 && parse_range(body, body_end, &a, &b, &step, &width);
        if (n_commas == 0 && !is_range) continue; /* "{abc}" stays literal */

        const char *suffix = s + close + 1;
        size_t suffix_len = strlen(suffix);
        if (is_range) {
            long long count = (a <= b ? b - a : a - b) / step + 1;
            FLIP_CHECK(count <= BRACE_MAX_ITEMS,
                       "brace pattern '%s' expands to more than %d items; check the range bounds",
                       pattern, BRACE_MAX_ITEMS);
            size_t cap = i + 48 + suffix_len + 1;
            char *buf = flip_malloc(cap, "brace expansion");
            for (long long k = 0; k < count; k++) {
                long long v = a <= b ? a + k * step : a - k * step;
                memcpy(buf, s, i);
                int w;
                if (v < 0) w = snprintf(buf + i, 48, "-%0*lld", width > 0 ? width - 1 : 0, -v);
                else w = snprintf(buf + i, 48, "%0*lld", width, v);
                memcpy(buf + i + (size_t)w, suffix, suffix_len + 1);
                expand_from(out, buf, i + (size_t)w, pattern);
                check_size(out, pattern);
            }
            flip_free(buf);
        } else {
            char *buf = flip_malloc(len + 1, "brace expansion");
            const char *item = body;
            depth = 0;
            for (const char *p = body;; p++) {
                if (p < body_end && *p == '{') depth++;
                else if (p < body_end && *p == '}') depth--;
                if (p == body_end || (*p == ',' && depth == 0)) {
                    size_t item_len = (size_t)(p - item);
                    memcpy(buf, s, i);
                    memcpy(buf + i, item, item_len);
                    memcpy(buf + i + item_len, suffix, suffix_len + 1);
                    expand_from(out, buf, i, pattern);
                    check_size(out, pattern);
                    if (p == body_end) break;
                    item = p + 1;
                }
            }
            flip_free(buf);
        }
        return;
    }
    brace_list_push(out, s);
}

void brace_expand(BraceList *out, const char *pattern) {
    expand_from(out, pattern, 0, pattern);
}
