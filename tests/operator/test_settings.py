"""Operator settings from the environment, the kopf settings derived from them, and the CLI."""

from __future__ import annotations

import pytest

from warmpool.cli import build_parser
from warmpool_operator.app import kopf_settings
from warmpool_operator.settings import OperatorConfig, SettingsError, backoff_delay, config_from_env

pytestmark = pytest.mark.unit


def test_defaults_without_environment() -> None:
    config = config_from_env({})
    assert config == OperatorConfig()
    assert config.runtime_image == "warmpool-runtime:0.1.0"
    assert config.runtime_log_format == "json"


def test_environment_overrides() -> None:
    config = config_from_env(
        {
            "WARMPOOL_OPERATOR_RUNTIME_IMAGE": "registry.local/warmpool:2",
            "WARMPOOL_OPERATOR_RESYNC_SECONDS": "5",
            "WARMPOOL_OPERATOR_RETRY_BACKOFF_SECONDS": "1, 3,9",
            "WARMPOOL_OPERATOR_METRICS_PORT": "0",
            "WARMPOOL_OPERATOR_STANDALONE": "true",
            "WARMPOOL_OPERATOR_PRIORITY": "-3",
            "WARMPOOL_OPERATOR_RUNTIME_LOG_FORMAT": "text",
            "UNRELATED": "x",
        }
    )
    assert config.runtime_image == "registry.local/warmpool:2"
    assert config.resync_seconds == 5.0
    assert config.retry_backoff_seconds == (1.0, 3.0, 9.0)
    assert config.metrics_port == 0
    assert config.standalone is True
    assert config.priority == -3
    assert config.runtime_log_format == "text"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RESYNC_SECONDS", "soon"),
        ("RESYNC_SECONDS", "0"),
        ("METRICS_PORT", "80.5"),
        ("RETRY_BACKOFF_SECONDS", "1,x"),
        ("RETRY_BACKOFF_SECONDS", "1,-1"),
        ("STANDALONE", "maybe"),
        ("RUNTIME_LOG_FORMAT", "plain"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"WARMPOOL_OPERATOR_{name}"):
        config_from_env({f"WARMPOOL_OPERATOR_{name}": value})


def test_backoff_steps_then_repeats_the_last() -> None:
    config = OperatorConfig(retry_backoff_seconds=(1.0, 2.0, 5.0))
    assert [backoff_delay(config, retry) for retry in range(5)] == [1.0, 2.0, 5.0, 5.0, 5.0]


def test_kopf_keeps_its_state_under_our_api_group() -> None:
    settings = kopf_settings(
        OperatorConfig(request_timeout_seconds=12, watch_inactivity_seconds=40, leader_election=False)
    )
    assert settings.persistence.finalizer == "tensorwasm.dev/finalizer"
    assert getattr(settings.persistence.progress_storage, "prefix", None) == "tensorwasm.dev"
    assert getattr(settings.persistence.diffbase_storage, "prefix", None) == "tensorwasm.dev"
    assert settings.networking.request_timeout == 12
    assert settings.watching.inactivity_timeout == 40
    # The API server parses timeoutSeconds as an integer: "300.0" is refused.
    assert isinstance(settings.watching.server_timeout, int)
    assert settings.peering.name == "warmpool"
    assert settings.peering.mandatory is True
    assert settings.peering.lifetime == 30
    assert kopf_settings(OperatorConfig(standalone=True)).peering.standalone is True


def test_with_leader_election_kopf_peering_is_off_and_broken_watches_are_reopened() -> None:
    settings = kopf_settings(OperatorConfig())
    # Equal peering priorities pause every replica: the Lease alone decides who acts.
    assert (settings.peering.standalone, settings.peering.mandatory) == (True, False)
    # A silent stream is dropped and reopened; every watch is renewed, which re-lists on 410 Gone.
    assert settings.watching.inactivity_timeout == 70
    assert settings.watching.server_timeout == 300
    assert settings.watching.client_timeout is not None
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.watching.reconnect_backoff == 1.0


def test_lease_settings_are_read_and_checked() -> None:
    config = config_from_env({"WARMPOOL_OPERATOR_LEADER_ELECTION": "false", "WARMPOOL_OPERATOR_LEASE_NAME": "x",
                              "WARMPOOL_OPERATOR_LEASE_DURATION_SECONDS": "30"})
    assert (config.leader_election, config.lease_name, config.lease_duration_seconds) == (False, "x", 30)
    with pytest.raises(SettingsError, match="LEASE_RETRY_SECONDS < LEASE_RENEW_DEADLINE_SECONDS"):
        config_from_env({"WARMPOOL_OPERATOR_LEASE_DURATION_SECONDS": "5"})


def test_cli_namespace_scoping() -> None:
    parser = build_parser()
    args = parser.parse_args(["operator", "run", "-n", "team-a", "--namespace", "team-b"])
    assert (args.namespaces, args.all_namespaces) == (["team-a", "team-b"], False)
    args = parser.parse_args(["operator", "run", "--all-namespaces", "--metrics-port", "0"])
    assert (args.namespaces, args.all_namespaces, args.metrics_port) == (None, True, 0)
    for bad in (["operator", "run"], ["operator", "run", "-n", "a", "-A"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_cli_refuses_bad_settings_before_connecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WARMPOOL_OPERATOR_RESYNC_SECONDS", "soon")
    args = build_parser().parse_args(["operator", "run", "-A"])
    assert args.func(args) == 2
    assert "WARMPOOL_OPERATOR_RESYNC_SECONDS" in capsys.readouterr().err
