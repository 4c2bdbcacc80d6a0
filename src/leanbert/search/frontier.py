"""Which candidates are worth keeping, and which one to take: the Pareto front and the choice.

Each candidate ξ has three costs, all lower-better, as in Bort (arXiv 2010.10499): parameter size p(ξ),
inference time i(ξ) and error e(ξ) (here the held-out MLM loss after the same short proxy training).
Bort measures them against a maximum point T, the largest architecture; so does leanbert, with T the
candidate with the most parameters, and p and i reported as ratios p/p_T and i/i_T.

* The front: ξ is on it when no other candidate is at least as good on all three costs and better on
  one. It needs no weights: every architecture worth taking is on it.
* The choice: among candidates whose error is within `tolerance` of the best, e <= (1 + tolerance) e_min,
  the one of least cost (p/p_T)^w_p (i/i_T)^w_i; ties go to the lower error. Bort ranks by its
  W-coefficient, which also trades the three metrics off against T; this rule is leanbert's own,
  chosen because its two knobs read plainly ("within 2% of the best loss, smallest and fastest").

A candidate whose error is not finite (a diverged proxy run) is on no front and never chosen.
Cost: O(n^2) comparisons for n candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is at least as good as b on every cost and better on one (all costs lower-better)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(points: Sequence[Sequence[float]]) -> list[bool]:
    """For each point, whether no other point dominates it; points with a non-finite cost are off it."""
    finite = [all(math.isfinite(x) for x in p) for p in points]
    return [ok and not any(finite[j] and dominates(points[j], p) for j in range(len(points)) if j != i)
            for i, (p, ok) in enumerate(zip(points, finite))]


def within_tolerance(errors: Sequence[float], tolerance: float) -> list[bool]:
    """Whether each error is finite and at most (1 + tolerance) times the lowest finite one."""
    finite = [e for e in errors if math.isfinite(e)]
    limit = (1.0 + tolerance) * min(finite) if finite else math.nan
    return [math.isfinite(e) and e <= limit for e in errors]


def choose(costs: Sequence[float], errors: Sequence[float], tolerance: float,
           front: Sequence[bool] | None = None) -> int | None:
    """Index of the least-cost candidate whose error is within `tolerance` of the lowest, among those on the
    `front` when it is given; None if no error is finite.

    With both weights > 0 the least-cost eligible candidate is on the front anyway (a candidate dominating it
    would cost less, or the same with a lower error); a zero weight makes equal-cost candidates that only
    the front tells apart, so the caller passes it."""
    # the lowest error is on the front: whatever dominates a point has an error at most its own
    eligible = [i for i, ok in enumerate(within_tolerance(errors, tolerance)) if ok and (front is None or front[i])]
    return min(eligible, key=lambda i: (costs[i], errors[i])) if eligible else None


def relative_cost(params_ratio: float, time_ratio: float, params_weight: float, time_weight: float) -> float:
    """(p / p_T)^w_p * (i / i_T)^w_i: 1 for T itself, lower for smaller, faster candidates."""
    return params_ratio ** params_weight * time_ratio ** time_weight
