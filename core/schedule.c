/* schedule.c — learning-rate schedules, lr as a function of the 0-based step.
 * All kinds warm up linearly from 0: lr = base_lr step / warmup for step < warmup.
 *   cosine: then min_lr + (base_lr - min_lr) (1 + cos(pi q)) / 2,
 *           q = (step - warmup) / (total - warmup) clamped to [0, 1]
 *   const: then base_lr
 *   const-cooldown: base_lr until total - cooldown, then linear to min_lr at
 *           step total (lr = min_lr from there on). */
#include <math.h>

#include "common.h"
#include "ops.h"

#define SCHED_PI 3.14159265358979323846

float schedule_lr(const Schedule *s, long step) {
    FLIP_CHECK(s->warmup_steps >= 0 && s->total_steps >= 0 && s->cooldown_steps >= 0,
               "schedule: negative warmup %ld / total %ld / cooldown %ld steps", s->warmup_steps,
               s->total_steps, s->cooldown_steps);
    double base = s->base_lr, lo = s->min_lr;
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return (float)(base * (double)step / (double)s->warmup_steps);
    switch (s->kind) {
    case FLIP_SCHED_COSINE: {
        long span = s->total_steps - s->warmup_steps;
        double q = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 1.0;
        if (q > 1.0) q = 1.0;
        return (float)(lo + (base - lo) * 0.5 * (1.0 + cos(SCHED_PI * q)));
    }
    case FLIP_SCHED_CONST:
        return (float)base;
    case FLIP_SCHED_CONST_COOLDOWN: {
        long start = s->total_steps - s->cooldown_steps;
        if (start < s->warmup_steps) start = s->warmup_steps;
        if (step < start) return (float)base;
        long span = s->total_steps - start;
        double q = span > 0 ? (double)(step - start) / (double)span : 1.0;
        if (q > 1.0) q = 1.0;
        return (float)(base + (lo - base) * q);
    }
    }
    FLIP_FATAL("schedule: unknown kind %d", (int)s->kind);
}
