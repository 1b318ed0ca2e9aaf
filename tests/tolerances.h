/* tolerances.h — every test tolerance of flip, one table, a reason each.
 * atol/rtol pairs are used as |got - ref| <= atol + rtol |ref|. */
#ifndef FLIP_TOLERANCES_H
#define FLIP_TOLERANCES_H

/* fast op (float, oneDNN/OpenMP, blocked summation) vs _ref (double accumulation):
 * float rounding of K-term dot products grows ~ sqrt(K) * 2^-24 * |terms|;
 * K <= 4096 here, so 1e-4 relative leaves > 10x margin. */
#define TOL_OP_ATOL 1e-5
#define TOL_OP_RTOL 1e-4

/* central finite differences in double on the _ref path with step 1e-3 (in
 * float storage for the model): truncation O(h^2) and float rounding of the
 * loss (~1e-7 relative / h) give ~1e-3 relative error on O(1) gradients. */
#define TOL_FD_RTOL 2e-2
#define TOL_FD_ATOL 1e-4

#endif
