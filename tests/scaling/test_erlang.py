"""Erlang's loss formula and the pod count it implies."""

import math

import pytest

from warmpool_operator.scaling.erlang import erlang_b, max_load_per_pod, offered_load, pods_needed

pytestmark = pytest.mark.unit


def closed_form(servers: int, load: float) -> float:
    terms = [load**k / math.factorial(k) for k in range(servers + 1)]
    return terms[-1] / sum(terms)


@pytest.mark.parametrize(
    ("servers", "load", "expected"),
    [
        (0, 3.0, 1.0),  # no warm instance: every invocation misses
        (5, 0.0, 0.0),  # no load: nothing misses
        (1, 1.0, 0.5),  # a / (1 + a)
        (2, 1.0, 0.2),  # (1/2) / (1 + 1 + 1/2)
        (3, 2.0, (8 / 6) / (1 + 2 + 2 + 8 / 6)),
    ],
)
def test_small_systems_by_hand(servers: int, load: float, expected: float) -> None:
    assert erlang_b(servers, load) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("servers", "load"), [(16, 8.0), (16, 27.5), (10, 4.46), (40, 30.0)])
def test_recursion_matches_the_closed_form(servers: int, load: float) -> None:
    assert erlang_b(servers, load) == pytest.approx(closed_form(servers, load), rel=1e-9)


@pytest.mark.parametrize(
    ("servers", "table_load"),
    [(10, 4.46), (16, 8.88), (20, 12.03)],  # published Erlang B tables at 1 % blocking
)
def test_capacity_at_one_percent_matches_erlang_tables(servers: int, table_load: float) -> None:
    assert max_load_per_pod(servers, 0.01) == pytest.approx(table_load, abs=0.01)
    assert erlang_b(servers, max_load_per_pod(servers, 0.01)) == pytest.approx(0.01, rel=1e-6)


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (0.0, 0),
        (8.8, 1),  # B(16, 8.8) ≈ 0.0095
        (8.9, 2),  # B(16, 8.9) ≈ 0.0102 on one pod; 4.45 per pod on two
        (27.5, 4),  # three pods would carry 9.17 each: B ≈ 0.0126
        (137.5, 16),
    ],
)
def test_pods_needed(load: float, expected: int) -> None:
    pods = pods_needed(load, 16, 0.01)
    assert pods == expected
    if pods:
        assert erlang_b(16, load / pods) <= 0.01
    if pods > 1:
        assert erlang_b(16, load / (pods - 1)) > 0.01


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="servers"):
        erlang_b(-1, 1.0)
    with pytest.raises(ValueError, match="load"):
        erlang_b(4, math.nan)
    with pytest.raises(ValueError, match="warm_per_pod"):
        pods_needed(3.0, 0, 0.01)


@pytest.mark.parametrize(("servers", "load"), [(1, 1.0), (16, 8.875), (16, 15.8), (16, 40.0), (4, 0.3)])
def test_offered_load_turns_the_formula_around(servers: int, load: float) -> None:
    assert offered_load(servers, erlang_b(servers, load)) == pytest.approx(load, rel=1e-6)


def test_offered_load_by_hand() -> None:
    # B(1, a) = a / (1 + a) = 0.5 at a = 1; B(2, 1) = 0.2.
    assert offered_load(1, 0.5) == pytest.approx(1.0)
    assert offered_load(2, 0.2) == pytest.approx(1.0)


@pytest.mark.parametrize(("servers", "blocking"), [(0, 0.1), (4, 0.0), (4, 1.0), (4, -0.1)])
def test_offered_load_rejects_what_no_load_explains(servers: int, blocking: float) -> None:
    with pytest.raises(ValueError, match=r"servers|blocking"):
        offered_load(servers, blocking)
