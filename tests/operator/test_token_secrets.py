"""The index of token Secrets that fleet members name: bounded by them, current as the watch reports."""

from __future__ import annotations

import pytest

from warmpool_operator.runtimefleet.tokens import TokenSecrets

pytestmark = pytest.mark.unit

A, B = ("team", "fleet-a"), ("team", "fleet-b")
CALLERS, OTHERS = ("apps", "callers"), ("apps", "others")


def test_only_secrets_a_fleet_names_pass_the_watch_filter_and_are_forgotten_with_the_last_fleet() -> None:
    tokens = TokenSecrets(watching=True)
    tokens.record(A, {CALLERS, OTHERS})
    tokens.record(B, {CALLERS})
    assert tokens.referenced(*CALLERS)
    assert tokens.referenced(*OTHERS)
    assert not tokens.referenced("apps", "unrelated")
    assert not tokens.referenced(None, "callers")

    tokens.remember(CALLERS, ("d1",))
    tokens.record(A, {CALLERS})  # A's member naming `others` left
    assert not tokens.referenced(*OTHERS)
    tokens.forget_fleet(A)
    assert tokens.cached(CALLERS) == (True, ("d1",))  # still named by B
    tokens.record(B, set())
    assert not tokens.referenced(*CALLERS)
    assert tokens.cached(CALLERS) == (False, None)


def test_a_change_the_watch_reports_names_the_fleets_to_reconcile_once() -> None:
    tokens = TokenSecrets(watching=True)
    tokens.record(A, {CALLERS})
    tokens.record(B, {CALLERS})
    tokens.remember(CALLERS, ("d1",))
    assert tokens.observe(CALLERS, ("d1",)) == frozenset()  # the same digests: nothing to do
    assert tokens.observe(CALLERS, ("d2",)) == {A, B}
    assert tokens.observe(CALLERS, None) == {A, B}  # deleted
    assert tokens.cached(CALLERS) == (True, None)
    assert tokens.observe(OTHERS, ("d3",)) == frozenset()  # named by no fleet: not kept
    assert tokens.cached(OTHERS) == (False, None)


def test_a_read_by_name_never_overwrites_what_the_watch_said_since() -> None:
    tokens = TokenSecrets(watching=True)
    tokens.record(A, {CALLERS})
    assert tokens.observe(CALLERS, ("new",)) == {A}  # seen first: the fleet reconciles
    tokens.remember(CALLERS, ("old",))  # a read that started before the change answers late
    assert tokens.cached(CALLERS) == (True, ("new",))


def test_without_a_watch_nothing_is_cached() -> None:
    tokens = TokenSecrets()
    tokens.record(A, {CALLERS})
    tokens.remember(CALLERS, ("d1",))
    assert tokens.cached(CALLERS) == (False, None)
