/* brace.h — shell-style brace expansion for shard and tar lists.
 *
 *   "train-{000000..000127}.h5"  numeric range; if either endpoint has a
 *                                leading zero every item is zero-padded to the
 *                                wider endpoint's width (bash rule); ranges
 *                                may count down ({9..0}).
 *   "{a,b,c}.tar"                comma list; items may themselves contain
 *                                braces ({x,{y,z}} -> x y z).
 *   several groups               cartesian product, leftmost group slowest.
 * A pattern without braces expands to itself. A brace without a partner, or a
 * group that is neither a list nor a range ("{abc}") is kept literally, as
 * bash does — so paths containing braces still work.
 *
 * Ownership: the returned BraceList owns its strings; brace_list_free
 * releases them. Expansions larger than BRACE_MAX_ITEMS are a fatal error
 * naming the pattern (a typo like {0..99999999} must not eat the memory). */
#ifndef FLIP_BRACE_H
#define FLIP_BRACE_H

#include <stddef.h>

#define BRACE_MAX_ITEMS 10000000

typedef struct {
    char **items; /* (n) expanded strings, in order */
    size_t n;
    size_t cap;
} BraceList;

/* Appends the expansion of `pattern` to `out` (initialise with {0}). */
void brace_expand(BraceList *out, const char *pattern);
/* Appends one string (copied). */
void brace_list_push(BraceList *out, const char *s);
void brace_list_free(BraceList *list);

#endif
