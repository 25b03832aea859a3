"""Runtime config parsing: every bad value is refused with the field it concerns."""

from __future__ import annotations

import os
from typing import Any

import pytest

from warmpool_runtime.config import MAX_CONFIG_BYTES, ConfigError, load_config, parse_config, single_tuple_config
from warmpool_runtime.settings import SETTINGS_KEYS, RuntimeSettings

pytestmark = pytest.mark.unit

SHA = "a" * 64


def entry(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"tenant": "acme", "module": {"sha256": SHA, "source": {"path": "/m.wasm"}}}
    base.update(over)
    return base


def test_defaults_and_overrides() -> None:
    config = parse_config({"limits": {"timeoutMs": 50}, "tuples": [entry(limits={"memoryBytes": 1 << 20})]})
    (t,) = config.tuples
    assert t.warm == 4
    assert t.limits.timeout_ms == 50
    assert t.limits.memory_bytes == 1 << 20
    assert config.max_total_warm == 256
    assert config.settings == RuntimeSettings()
    assert config.settings.workers == 4


@pytest.mark.parametrize(("raw", "field"), [
    ({"tuples": {}}, "tuples must be a list"),
    ({"tuples": [entry(tenant="Not_A_Label")]}, "tuples[0].tenant"),
    ({"tuples": [entry(module={"sha256": "ABC", "source": {"path": "x"}})]}, "tuples[0].module.sha256"),
    ({"tuples": [entry(module={"sha256": SHA, "source": {"path": "x", "url": "http://h/x"}})]}, "exactly one"),
    ({"tuples": [entry(module={"sha256": SHA, "source": {"url": "ftp://h/x"}})]}, "http(s)"),
    ({"tuples": [entry(warmInstancesPerTuple=-1)]}, "warmInstancesPerTuple"),
    ({"tuples": [entry(limits={"timeoutMs": 0})]}, "limits.timeoutMs"),
    ({"tuples": [entry(limits={"bogus": 1})]}, "bogus"),
    ({"tuples": [entry(), entry()]}, "repeats"),
    ({"maxTotalWarm": -1, "tuples": [entry()]}, "maxTotalWarm"),
    ({"tuples": [entry()], "extra": 1}, "extra"),
    ({"tuples": [entry()], "settings": {"poolSlot": 1}}, "settings: unknown field(s) poolSlot"),
    ({"tuples": [entry()], "settings": {"pool_slots": 1}}, "pool_slots (did you mean poolSlots"),
    ({"tuples": [entry()], "settings": {"workers": 0}}, "settings.workers must be an integer >= 1"),
    ({"tuples": [entry()], "settings": {"workers": 2.5}}, "settings.workers"),
    ({"tuples": [entry()], "settings": {"inlineBudgetMs": -1}}, "settings.inlineBudgetMs"),
    ({"tuples": [entry()], "settings": {"inlineBudgetMs": float("nan")}}, "settings.inlineBudgetMs"),
    ({"tuples": [entry()], "settings": {"pooling": 1}}, "settings.pooling must be a boolean"),
    ({"tuples": [entry()], "settings": []}, "settings must be a mapping"),
    ({"tuples": [entry()], "workers": 2}, "workers (a setting: give it as settings.workers)"),
])
def test_bad_values_name_their_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        parse_config(raw)


def test_floors_respect_the_global_cap() -> None:
    config = parse_config({"maxTotalWarm": 6, "tuples": [entry(warmInstancesPerTuple=4),
                                                         entry(tenant="beta", warmInstancesPerTuple=4)]})
    assert list(config.floors().values()) == [4, 2]


def test_files_in_yaml_and_json(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text(f"tuples:\n  - tenant: acme\n    module: {{sha256: {SHA}, source: {{dir: /m}}}}\n")
    (tmp_path / "c.json").write_text(f'{{"tuples": [{{"tenant": "acme", "module": {{"sha256": "{SHA}", '
                                     '"source": {"url": "https://h/m.wasm"}}}]}')
    assert load_config(str(tmp_path / "c.yaml")).tuples[0].source.dir == "/m"
    assert load_config(str(tmp_path / "c.json")).tuples[0].source.url == "https://h/m.wasm"
    (tmp_path / "bad.yaml").write_text("tuples: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "absent.yaml"))


def test_a_config_file_over_the_cap_or_not_a_regular_file_is_refused_unread(tmp_path) -> None:
    text = f'{{"tuples": [{{"tenant": "acme", "module": {{"sha256": "{SHA}", "source": {{"dir": "/m"}}}}}}]}}'
    at_cap = tmp_path / "at-cap.json"
    at_cap.write_text(text + " " * (MAX_CONFIG_BYTES - len(text)))
    assert load_config(str(at_cap)).tuples[0].tenant == "acme"
    over = tmp_path / "over.json"
    over.write_text(text + " " * (MAX_CONFIG_BYTES + 1 - len(text)))
    with pytest.raises(ConfigError, match=f"over.json is {MAX_CONFIG_BYTES + 1} bytes, over the cap of "
                                          f"{MAX_CONFIG_BYTES}"):
        load_config(str(over))
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # no writer: a blocking open or read would never return
    with pytest.raises(ConfigError, match=r"fifo\.yaml is not a regular file"):
        load_config(str(fifo))
    with pytest.raises(ConfigError, match="Is a directory"):
        load_config(str(tmp_path))
    (tmp_path / "latin1.yaml").write_bytes(b"tuples: []\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(tmp_path / "latin1.yaml"))


def test_single_tuple_flags() -> None:
    config = single_tuple_config("acme", "http://127.0.0.1:1/m.wasm", SHA, 3)
    assert config.tuples[0].source.url
    assert config.tuples[0].warm == 3


def test_zero_table_elements_is_a_valid_limit() -> None:
    # The WarmPool CRD accepts 0 (a module without tables needs none); the runtime must too.
    config = parse_config({"tuples": [entry(limits={"tableElements": 0})]})
    assert config.tuples[0].limits.table_elements == 0


def test_settings_are_read_by_their_camel_case_names() -> None:
    config = parse_config({"tuples": [entry()], "settings": {
        "workers": 8, "inlineBudgetMs": 0, "slowStrikes": 5, "epochTickMs": 2, "pooling": False,
        "maxBodyBytes": 1024, "loopRecycleMaxSeconds": 0.001,
    }})
    assert config.settings == RuntimeSettings(workers=8, inline_budget_ms=0.0, slow_strikes=5, epoch_tick_ms=2.0,
                                              pooling=False, max_body_bytes=1024, loop_recycle_max_seconds=0.001)
    assert isinstance(config.settings.epoch_tick_ms, float)


def test_every_setting_has_a_config_key_and_a_line_in_the_docs() -> None:
    from dataclasses import fields
    from pathlib import Path

    assert sorted(SETTINGS_KEYS.values()) == sorted(f.name for f in fields(RuntimeSettings))
    docs = (Path(__file__).parents[2] / "docs" / "runtime-config.md").read_text()
    missing = [key for key in SETTINGS_KEYS if f"{key}:" not in docs]
    assert not missing, f"settings keys not documented in docs/runtime-config.md: {missing}"
