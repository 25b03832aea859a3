"""Module fetch policy as pure logic: backoff, Retry-After, how a source shows itself."""

from __future__ import annotations

import email.utils

import pytest

from warmpool_runtime.fetch import backoff_delay, parse_retry_after, scrub
from warmpool_runtime.modules import ModuleSource

pytestmark = pytest.mark.unit

SIGNED = "https://u:hunter2@bucket.s3.amazonaws.com/m.wasm?X-Amz-Credential=AKIAX&X-Amz-Signature=5ec2e7"


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_backoff_doubles_with_half_of_it_jittered_and_stops_at_the_cap(jitter: float) -> None:
    delays = [backoff_delay(attempt, 0.5, 10.0, None, lambda: jitter) for attempt in range(1, 9)]
    for attempt, delay in enumerate(delays, start=1):
        exponential = min(10.0, 0.5 * 2 ** (attempt - 1))
        assert exponential / 2 <= delay <= exponential
    assert max(delays) <= 10.0


def test_backoff_survives_huge_attempt_counts() -> None:
    assert backoff_delay(10_000, 0.5, 10.0, None, lambda: 1.0) == 10.0


@pytest.mark.parametrize(("retry_after", "expected"), [(3.0, 3.0), (60.0, 10.0), (0.0, 0.25)])
def test_retry_after_is_honoured_up_to_the_cap(retry_after: float, expected: float) -> None:
    assert backoff_delay(1, 0.5, 10.0, retry_after, lambda: 0.0) == expected


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    for garbage in (None, "", "soon", "-5", "1.5e400", "Mon, 99 Foo 2026"):
        assert parse_retry_after(garbage, now) is None


def test_a_source_shows_itself_redacted() -> None:
    source = ModuleSource(url=SIGNED)
    for shown in (str(source), repr(source), source.describe(), f"{source}", str([source])):
        assert "hunter2" not in shown
        assert "AKIAX" not in shown
        assert "5ec2e7" not in shown
        assert "bucket.s3.amazonaws.com/m.wasm" in shown
    assert repr(source) == "ModuleSource(url='https://bucket.s3.amazonaws.com/m.wasm?<redacted>')"


def test_path_and_dir_sources_show_the_file_only() -> None:
    assert ModuleSource(path="/modules/echo.wasm").describe() == "/modules/echo.wasm"
    assert ModuleSource(dir="/modules").describe() == "/modules/<sha256>.wasm"
    # A URL given where a path was expected (`--module s3://...?sig`) is still redacted.
    assert "sig" not in ModuleSource(path="s3://k:hunter2@bucket/m.wasm?sig=1").describe()
    assert "hunter2" not in repr(ModuleSource(dir="https://k:hunter2@host/dir"))


def test_scrub_hides_what_a_library_echoed() -> None:
    text = f"error fetching {SIGNED}: X-Amz-Credential=AKIAX&X-Amz-Signature=5ec2e7 (user u:hunter2)"
    scrubbed = scrub(text, SIGNED)
    assert "hunter2" not in scrubbed
    assert "5ec2e7" not in scrubbed
    assert "https://bucket.s3.amazonaws.com/m.wasm?<redacted>" in scrubbed
