"""Loopback pod-IP leases: unique across agents on one machine, skipping addresses whose ports are taken."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest

from warmpool.dev.agent.podips import PodIPs, candidate_ips

pytestmark = pytest.mark.component


def test_candidates_start_at_127_0_0_2_and_skip_network_and_broadcast_octets() -> None:
    first = list(itertools.islice(candidate_ips(), 300))
    assert first[:2] == ["127.0.0.2", "127.0.0.3"]
    assert "127.0.0.255" not in first
    assert "127.0.1.0" not in first
    assert first[253] == "127.0.1.1"


def test_two_agents_sharing_a_lock_dir_never_lease_the_same_address(tmp_path: Path) -> None:
    one, two = PodIPs(tmp_path), PodIPs(tmp_path)
    leased = [one.acquire([]), two.acquire([]), one.acquire([]), two.acquire([])]
    assert len(set(leased)) == 4
    one.release(leased[0])
    assert two.acquire([], preferred=leased[0]) == leased[0]


def test_an_address_whose_port_is_in_use_is_skipped(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.2", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ips = PodIPs(tmp_path)
        assert ips.acquire([port], preferred="127.0.0.2") != "127.0.0.2"
