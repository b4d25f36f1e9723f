"""The compiled inner loop of ``bnb``: a resumable depth-first enumeration of x ∈ {0,1}^k.

The row's objective is given as K equivalent *convex* forms (one per multiplier vector u, see ``qcr.py``), each

    L(x) = const_f + Σ_l ( R_f[l, l] · (x_l − ctr_f[l]) + e_f[l] )²,   e_f[l] = Σ_{j > l} R_f[l, j] · (x_j − ctr_f[j])

exactly on the binary points (R_f upper triangular). Coordinates are fixed from ``k − 1`` down to ``0``
(Schnorr–Euchner order: at each level the candidate with the smaller bound first). With ``x_l … x_{k−1}`` fixed,
the terms ``l … k−1`` are known and the rest can reach 0, so ``const_f + partial_f[l]`` bounds every completion;
the node bound is the largest of the K, minus each form's round-off ``slack_f``; the first form's adds its ellipsoid bound on what the
free levels add (``ellipsoid.py``). A node whose bound reaches ``ub·(1 − rtol)`` is pruned.

The residuals ``e_f`` are kept per level (``E[f, l, i]`` = e_f[i] with ``x_l … x_{k−1}`` fixed, i < l), so entering a
level costs O(1) per form and fixing ``x_l`` updates the ``l`` residuals below it — ``E[f, l−1, i] = E[f, l, i] +
R_f[i, l]·(x_l − ctr_f[l])`` (the centre recursion of Ghasemmehdi & Agrell, "Faster recursions in sphere decoding",
2011). Most nodes are deep, where ``l`` is small; the direct sum it replaces cost O(k − l) at every node (3.3× fewer
nodes per second on d = 128 rows with four forms, same nodes).

The search state (``x``, per-level ``state``/``first``/bounds/terms/residuals, the position ``pos``) lives in arrays
owned by the caller, so :func:`search` can stop after ``budget`` nodes and be called again to continue — the caller
checks the wall clock between calls (numba cannot) and reads :func:`open_bound` for a certified bound when it stops.

``numba`` compiles it where installed (``pip install roundlab[bnb]``); without it the same code runs as Python,
about 100× slower, which is fine for tests and small rows.
"""

from __future__ import annotations

import numpy as np

from roundlab.solvers.compiled import COMPILED, njit  # noqa: F401  (COMPILED: re-exported for callers)

# positions of the scalar state in the int64 ``pos`` array
LEVEL, NODES, DONE = 0, 1, 2


def new_state(K: int, k: int, root_bound: float, ctr0: np.ndarray) -> dict:
    """Fresh search state for a row of ``k`` free elements and ``K`` forms (see the module docstring); ``ctr0``: the
    first form's centre, where the ellipsoid's minimiser ``T`` starts."""
    pos = np.zeros(3, dtype=np.int64)
    pos[LEVEL] = k - 1
    nodelb = np.empty(k + 1)
    nodelb[k] = root_bound
    T = np.zeros((k, k))
    T[k - 1] = ctr0
    return {"x": np.zeros(k, dtype=np.int8), "best": np.zeros(k, dtype=np.int8),
            "state": np.zeros(k, dtype=np.int8), "first": np.zeros(k, dtype=np.int8),
            "lb2": np.empty((k, 2)), "nodelb": nodelb, "terms": np.zeros((K, k, 2)),
            "partial": np.zeros((K, k + 1)), "E": np.zeros((K, k, k)), "T": T, "pos": pos, "ub": np.zeros(1)}


def columns(R: np.ndarray) -> np.ndarray:
    """``R`` (K, k, k) upper triangular, stored by columns (``out[f, l, i] = R[f, i, l]``): the kernel reads column
    ``l`` above the diagonal when it fixes ``x_l``."""
    return np.ascontiguousarray(np.transpose(R, (0, 2, 1)))


# One function on purpose (90 lines): numba compiles it to one loop without calls in the node hot path.
@njit(cache=True, nogil=True)
def search(Rt, ctr, const, slack, G, D, margin, ell, rtol, x, best, state, first, lb2, nodelb, terms, partial, E, T,
           pos, ub, budget):
    """Continue the enumeration for at most ``budget`` nodes. Returns True when the search space is exhausted.

    ``Rt`` (K, k, k): each form's upper-triangular factor by columns (:func:`columns`); ``ctr`` (K, k); ``const``
    and ``slack`` (K,). ``G``, ``D`` (k, k), ``margin`` (k,): the first form's ellipsoid (``ellipsoid.py``), used
    when ``ell``; ``T`` its free minimiser per level. ``ub[0]`` is the incumbent value (``best`` its point); both
    are updated in place.
    """
    K = Rt.shape[0]
    k = x.shape[0]
    l = pos[LEVEL]
    spent = 0
    while spent < budget:
        if l == k:                                   # backtracked past the root: closed
            pos[DONE] = 1
            break
        thr = ub[0] * (1.0 - rtol)
        s = state[l]
        if s == 0:                                   # entering level l: bound both candidates
            b0 = -np.inf
            b1 = -np.inf
            for f in range(K):
                t = E[f, l, l]
                a0 = Rt[f, l, l] * (0.0 - ctr[f, l]) + t
                a1 = Rt[f, l, l] * (1.0 - ctr[f, l]) + t
                terms[f, l, 0] = a0 * a0
                terms[f, l, 1] = a1 * a1
                v0 = const[f] + partial[f, l + 1] + a0 * a0 - slack[f]
                v1 = const[f] + partial[f, l + 1] + a1 * a1 - slack[f]
                if f == 0 and ell and l > 0:         # what the free levels add at least, after x_l = 0 or 1
                    e0 = -margin[l]
                    e1 = -margin[l]
                    tl = T[l, l]
                    for i in range(l):
                        t0 = T[l, i] + G[l, i] * (0.0 - tl)
                        t1 = T[l, i] + G[l, i] * (1.0 - tl)
                        e0 += D[l, i] * min(t0 * t0, (1.0 - t0) * (1.0 - t0), 1.0)
                        e1 += D[l, i] * min(t1 * t1, (1.0 - t1) * (1.0 - t1), 1.0)
                    if e0 > 0.0:
                        v0 += e0
                    if e1 > 0.0:
                        v1 += e1
                if v0 > b0:
                    b0 = v0
                if v1 > b1:
                    b1 = v1
            if b1 < b0:
                first[l] = 1
                lb2[l, 0] = b1
                lb2[l, 1] = b0
            else:
                first[l] = 0
                lb2[l, 0] = b0
                lb2[l, 1] = b1
            state[l] = 1
            v = first[l]
            lb = lb2[l, 0]
        elif s == 1:                                 # second candidate
            state[l] = 2
            v = 1 - first[l]
            lb = lb2[l, 1]
        else:                                        # both done: back up
            state[l] = 0
            l += 1
            continue
        spent += 1
        if lb >= thr:
            state[l] = 2                             # the other candidate's bound is no smaller
            continue
        x[l] = v
        for f in range(K):
            partial[f, l] = partial[f, l + 1] + terms[f, l, v]
        nodelb[l] = lb
        if l == 0:                                   # a leaf: the exact objective (up to round-off)
            val = const[0] + partial[0, 0]
            if val < ub[0]:
                ub[0] = val
                for j in range(k):
                    best[j] = x[j]
        else:
            for f in range(K):                       # the residuals of the levels below, with x_l fixed
                dx = v - ctr[f, l]
                for i in range(l):
                    E[f, l - 1, i] = E[f, l, i] + Rt[f, l, i] * dx
            if ell:                                  # and the free levels' minimiser
                dt = v - T[l, l]
                for i in range(l):
                    T[l - 1, i] = T[l, i] + G[l, i] * dt
            l -= 1
            state[l] = 0
    if l == k:
        pos[DONE] = 1
    pos[LEVEL] = l
    pos[NODES] += spent
    return pos[DONE] == 1


def open_bound(st: dict) -> float:
    """A certified lower bound over everything the paused search has not yet ruled out (and the incumbent)."""
    k = st["x"].shape[0]
    l = int(st["pos"][LEVEL])
    ub = float(st["ub"][0])
    if st["pos"][DONE]:
        return ub
    out = ub
    state, lb2, nodelb = st["state"], st["lb2"], st["nodelb"]
    if state[l] == 0:
        out = min(out, float(nodelb[l + 1]))        # the current node's subtree is untouched
    for j in range(l, k):
        if state[j] == 1:
            out = min(out, float(lb2[j, 1]))        # an untried second candidate
    return out
