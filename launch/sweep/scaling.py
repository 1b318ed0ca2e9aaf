"""scaling.py — scaling-law fits for flip-sweep (issue 6), numpy only.

Follows Cherti et al., "Reproducible scaling laws for contrastive
language-image learning": the error E of each run is plotted against its
training compute C (FLOPs); the compute frontier is the best E reached at each
level of compute, and a power law is fitted to it.

- binned_frontier: bins log10(C) into bins of `bin_decades`, keeps the run with
  the lowest E in each bin, then only the bins that improve on every bin of
  lower compute (so E strictly decreases along the frontier).
- fit_power:       E = a C^b, least squares on log E = log a + b log C.
- fit_saturating:  E = a C^b + c with 0 <= c < min E, least squares in log E
  (relative errors, as the power law); for a fixed c the problem is the power
  law on E - c, so c is found by a 1-D profile search (grid, then golden
  section), a and b in closed form.
- bootstrap:       resample all runs of a group with replacement, recompute the
  frontier and refit; mean, std and 5/95 % percentiles of each parameter over
  the resamples that can be fitted (enough distinct frontier points).

C is in FLOPs, so `a` carries the units of C^-b; b < 0 when the error falls
with compute.
"""

import math

import numpy as np

LN10 = math.log(10.0)


def binned_frontier(C, E, bin_decades=0.1):
    """Indices (into C, E) of the binned Pareto frontier, by increasing C."""
    C = np.asarray(C, dtype=float)
    E = np.asarray(E, dtype=float)
    ok = np.isfinite(C) & np.isfinite(E) & (C > 0) & (E > 0)
    idx = np.nonzero(ok)[0]
    if idx.size == 0:
        return []
    bins = np.floor(np.log10(C[idx]) / bin_decades).astype(np.int64)
    best = {}
    for i, b in zip(idx, bins):
        if b not in best or E[i] < E[best[b]] or (E[i] == E[best[b]] and C[i] < C[best[b]]):
            best[b] = i
    out, emin = [], math.inf
    for b in sorted(best):
        i = best[b]
        if E[i] < emin:
            out.append(int(i))
            emin = E[i]
    return out


def _linfit(x, y):
    """y = k + b x by least squares; returns (k, b, sse)."""
    A = np.stack([np.ones_like(x), x], axis=1)
    coef, _, _, _ = np.linalg.lstsq(A, y, rcond=None)
    r = y - A @ coef
    return float(coef[0]), float(coef[1]), float(r @ r)


def fit_power(C, E):
    """E = a C^b. Needs >= 2 distinct C, E > 0. Returns dict or None."""
    C = np.asarray(C, dtype=float)
    E = np.asarray(E, dtype=float)
    if np.unique(C).size < 2 or np.any(E <= 0) or np.any(C <= 0):
        return None
    k, b, sse = _linfit(np.log(C), np.log(E))
    return {"a": math.exp(k), "b": b, "rmse_log": math.sqrt(sse / C.size)}


def _sat_sse(c, lc, E):
    """Profile: best a, b for this c, and the SSE of log E."""
    k, b, _ = _linfit(lc, np.log(E - c))
    pred = np.exp(k + b * lc) + c
    r = np.log(pred) - np.log(E)
    return float(r @ r), k, b


def fit_saturating(C, E):
    """E = a C^b + c, 0 <= c < min E. Needs >= 3 distinct C. Returns dict or None."""
    C = np.asarray(C, dtype=float)
    E = np.asarray(E, dtype=float)
    if np.unique(C).size < 3 or np.any(E <= 0) or np.any(C <= 0):
        return None
    lc = np.log(C)
    emin = float(E.min())
    hi = emin * (1.0 - 1e-9)
    grid = np.linspace(0.0, hi, 401)
    vals = [_sat_sse(c, lc, E)[0] for c in grid]
    j = int(np.argmin(vals))
    lo_c, hi_c = grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)]
    g = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi_c - g * (hi_c - lo_c), lo_c + g * (hi_c - lo_c)
    f1, f2 = _sat_sse(x1, lc, E)[0], _sat_sse(x2, lc, E)[0]
    for _ in range(80):
        if f1 <= f2:
            hi_c, x2, f2 = x2, x1, f1
            x1 = hi_c - g * (hi_c - lo_c)
            f1 = _sat_sse(x1, lc, E)[0]
        else:
            lo_c, x1, f1 = x1, x2, f2
            x2 = lo_c + g * (hi_c - lo_c)
            f2 = _sat_sse(x2, lc, E)[0]
    c = 0.5 * (lo_c + hi_c)
    if vals[j] < _sat_sse(c, lc, E)[0]:
        c = float(grid[j])
    sse, k, b = _sat_sse(c, lc, E)
    return {"a": math.exp(k), "b": b, "c": float(c), "rmse_log": math.sqrt(sse / C.size)}


def _summary(vals):
    v = np.asarray(vals, dtype=float)
    if v.size == 0:
        return None
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "p05": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95))}


def bootstrap(C, E, fit, n_boot=200, bin_decades=0.1, seed=0):
    """Bootstrap spread of `fit`'s parameters: resample the runs, re-take the
    frontier, refit. Returns {"n_ok": k, "n": n_boot, param: summary}."""
    C = np.asarray(C, dtype=float)
    E = np.asarray(E, dtype=float)
    rng = np.random.default_rng(seed)
    got = {}
    n_ok = 0
    for _ in range(n_boot):
        s = rng.integers(0, C.size, C.size)
        f = binned_frontier(C[s], E[s], bin_decades)
        r = fit(C[s][f], E[s][f]) if f else None
        if r is None:
            continue
        n_ok += 1
        for k, v in r.items():
            if k != "rmse_log":
                got.setdefault(k, []).append(v)
    out = {"n_ok": n_ok, "n": n_boot}
    for k, v in got.items():
        out[k] = _summary(v)
    return out


def fit_group(C, E, n_boot=200, bin_decades=0.1, seed=0):
    """Frontier + both fits + bootstrap for one group of runs."""
    C = np.asarray(C, dtype=float)
    E = np.asarray(E, dtype=float)
    f = binned_frontier(C, E, bin_decades)
    res = {"n_runs": int(C.size), "frontier": f, "power": None, "saturating": None}
    if f:
        res["power"] = fit_power(C[f], E[f])
        res["saturating"] = fit_saturating(C[f], E[f])
    if res["power"] is not None:
        res["power"]["bootstrap"] = bootstrap(C, E, fit_power, n_boot, bin_decades, seed)
    if res["saturating"] is not None:
        res["saturating"]["bootstrap"] = bootstrap(C, E, fit_saturating, n_boot, bin_decades, seed + 1)
    return res


def plot_groups(groups, path_stem, title, ylabel):
    """groups: list of (label, C array, E array, fit_group result). Writes
    path_stem.png and path_stem.svg (matplotlib, Agg backend)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError as e:
        raise RuntimeError("plots need matplotlib: apt-get install python3-matplotlib "
                           "(launch/install-deps) [%s]" % e)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for gi, (label, C, E, res) in enumerate(groups):
        col = colors[gi % len(colors)]
        C = np.asarray(C, dtype=float)
        E = np.asarray(E, dtype=float)
        ax.scatter(C, E, s=18, color=col, alpha=0.45, label="%s runs" % label)
        f = res["frontier"]
        if f:
            ax.plot(C[f], E[f], "o", color=col, markersize=7, markerfacecolor="none", label="%s frontier" % label)
        lo, hi = C[C > 0].min(), C[C > 0].max()
        xs = np.logspace(math.log10(lo) - 0.15, math.log10(hi) + 0.15, 100)
        p = res.get("power")
        if p:
            ax.plot(xs, p["a"] * xs ** p["b"], "-", color=col, lw=1.4,
                    label="%s: %.3g C^%.3f" % (label, p["a"], p["b"]))
        s = res.get("saturating")
        if s:
            ax.plot(xs, s["a"] * xs ** s["b"] + s["c"], "--", color=col, lw=1.2,
                    label="%s: %.3g C^%.3f + %.3g" % (label, s["a"], s["b"], s["c"]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    fmt = matplotlib.ticker.FormatStrFormatter("%.3g")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path_stem + ".png", dpi=110)
    fig.savefig(path_stem + ".svg")
    plt.close(fig)
    return [path_stem + ".png", path_stem + ".svg"]
