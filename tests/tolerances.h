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

/* comm collectives (tests/comm): sums of a handful of O(1) floats in a
 * different order (MPI's reduction tree vs rank order): a few ulps. */
#define TOL_COMM_SUM_ATOL 1e-6
#define TOL_COMM_SUM_RTOL 1e-6
/* adjoint <y, AG x> = <RS y, x>: two double sums of the same float products in
 * different orders, with the reduce-scatter result rounded to float once. */
#define TOL_COMM_ADJOINT_RTOL 1e-6
/* distributed (B rows per rank, all-gather, reduce-scatter, all-reduce) vs one
 * process on all G rows, fast path both: the same float terms summed in other
 * orders (per-rank partial sums, MPI tree); measured max rel ~1e-6 on O(1e-2)
 * gradients, atol covers entries that cancel to ~0. */
#define TOL_DIST_ATOL 1e-6
#define TOL_DIST_RTOL 1e-4

#endif
