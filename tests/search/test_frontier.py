"""The Pareto front and the choice, against their definitions."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from leanbert.search.frontier import choose, pareto_front, relative_cost

costs3 = st.tuples(*[st.integers(0, 4).map(float)] * 3)  # small integers: ties are common


def _beats(q, p) -> bool:  # the test's own oracle: q is nowhere worse than p, and is not p
    return all(a <= b for a, b in zip(q, p)) and q != p


@given(st.lists(costs3, min_size=1, max_size=12))
def test_the_front_is_exactly_the_undominated_points(points):
    front = pareto_front(points)
    for i, p in enumerate(points):
        assert front[i] == (not any(_beats(q, p) for q in points))
    # every point off the front is dominated by one on it
    for i, p in enumerate(points):
        if not front[i]:
            assert any(front[j] and _beats(points[j], p) for j in range(len(points)))


def test_ties_by_hand():
    assert pareto_front([(1.0, 1.0, 1.0), (1.0, 1.0, 2.0)]) == [True, False]  # worse only in error
    assert pareto_front([(1.0, 1.0, 1.0), (1.0, 1.0, 1.0)]) == [True, True]  # equal points: neither dominates
    assert pareto_front([(1.0, 2.0, 1.0), (2.0, 1.0, 1.0)]) == [True, True]


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=10),
       st.sampled_from([(1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0)]), st.sampled_from([0.0, 0.5]))
def test_the_choice_is_on_the_front_whatever_the_weights(points, weights, tolerance):
    costs = [relative_cost(p / 3, t / 3, *weights) for p, t, _ in points]
    errors = [float(e) for _, _, e in points]
    front = pareto_front([(float(p), float(t), float(e)) for p, t, e in points])
    assert front[choose(costs, errors, tolerance, front)]


def test_a_diverged_candidate_is_on_no_front_and_dominates_nothing():
    points = [(1.0, 1.0, math.nan), (2.0, 2.0, 5.0), (3.0, 3.0, 6.0)]
    assert pareto_front(points) == [False, True, False]


@given(st.lists(st.tuples(st.floats(0.1, 10), st.floats(1, 2)), min_size=1, max_size=12), st.floats(0, 0.5))
def test_the_choice_is_the_cheapest_within_tolerance_of_the_best_error(rows, tolerance):
    costs, errors = [c for c, _ in rows], [e for _, e in rows]
    chosen = choose(costs, errors, tolerance)
    limit = (1 + tolerance) * min(errors)
    assert errors[chosen] <= limit
    assert all(costs[chosen] <= costs[i] for i in range(len(rows)) if errors[i] <= limit)


def test_the_choice_examples():
    # the best error wins with no tolerance; with 10% the cheaper, slightly worse one does
    assert choose([1.0, 0.3], [2.00, 2.10], 0.0) == 0
    assert choose([1.0, 0.3], [2.00, 2.10], 0.1) == 1
    assert choose([1.0, 0.3], [math.nan, 2.10], 0.0) == 1  # a diverged run is never chosen
    assert choose([1.0], [math.inf], 0.0) is None
    assert choose([0.5, 0.5], [2.05, 2.0], 0.1) == 1  # equal cost: the lower error
    # a zero size weight makes two equal costs: the front picks the smaller model
    assert choose([1.0, 1.0], [2.0, 2.0], 0.0, front=[False, True]) == 1


def test_relative_cost_is_one_at_the_reference_and_weighs_each_ratio():
    assert relative_cost(1.0, 1.0, 1.0, 1.0) == 1.0
    assert relative_cost(0.25, 0.5, 1.0, 2.0) == 0.25 * 0.25
    assert relative_cost(0.25, 0.5, 0.0, 1.0) == 0.5  # size ignored
