"""Module sources in the runtime config: the four kinds, url headers and CA bundle, and how a source shows itself."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from warmpool_runtime.config import ConfigError, parse_source
from warmpool_runtime.errors import ModuleError
from warmpool_runtime.modules import ModuleSource
from warmpool_runtime.oci import OciSource
from warmpool_runtime.source_files import read_headers, ssl_context

pytestmark = pytest.mark.unit

WHERE = "tuples[0].module.source"
AT = re.escape(WHERE)
DIGEST = "sha256:" + "cd" * 32


def test_an_oci_source_parses_with_every_field() -> None:
    pull_secret = "/var/run/warmpool/pull-secrets/p/.dockerconfigjson"
    source = parse_source({"oci": {"repository": "127.0.0.1:5000/acme/classify", "reference": "v1",
                                   "insecure": True, "dockerConfig": pull_secret}}, WHERE)
    assert source == ModuleSource(oci=OciSource("127.0.0.1:5000/acme/classify", "v1", True,
                                                "/var/run/warmpool/pull-secrets/p/.dockerconfigjson"))
    assert parse_source({"oci": {"repository": "r.example/m", "reference": DIGEST}}, WHERE).oci == \
        OciSource("r.example/m", DIGEST)
    assert parse_source({"oci": {"repository": "r.example/m"}}, WHERE).oci == OciSource("r.example/m")
    nulls = {"repository": "r.example/m", "reference": None, "insecure": None, "dockerConfig": None}
    assert parse_source({"oci": nulls, "headersDir": None}, WHERE).oci == OciSource("r.example/m")


@pytest.mark.parametrize(("raw", "message"), [
    ({"oci": "r.example/m"}, f"{AT}.oci must be a mapping"),
    ({"oci": {}}, f"{AT}.oci.repository must be a non-empty string"),
    ({"oci": {"repository": "acme/m"}}, f"{AT}.oci.repository 'acme/m' must start with the registry host"),
    ({"oci": {"repository": "https://r.example/m"}}, f"{AT}.oci.repository .* no scheme"),
    ({"oci": {"repository": "r.example/m", "reference": "sha256:zz"}}, f"{AT}.oci.reference 'sha256:zz'"),
    ({"oci": {"repository": "r.example/m", "reference": 3}}, f"{AT}.oci.reference must be a string"),
    ({"oci": {"repository": "r.example/m", "insecure": "yes"}}, f"{AT}.oci.insecure must be a boolean"),
    ({"oci": {"repository": "r.example/m", "dockerConfig": ""}}, f"{AT}.oci.dockerConfig must be a non-empty"),
    ({"oci": {"repository": "r.example/m", "tag": "v1"}}, f"{AT}.oci: unknown field.s. tag"),
    ({"oci": {"repository": "r.example/m"}, "path": "/m.wasm"}, "exactly one of path, url, dir, oci"),
    ({}, "exactly one of path, url, dir, oci; got none"),
    ({"oci": {"repository": "r.example/m"}, "headersDir": "/h"}, "headersDir only go with url, not oci"),
    ({"path": "/m.wasm", "caFile": "/ca.pem"}, "caFile only go with url, not path"),
    ({"url": "https://h/m.wasm", "headersDir": ""}, f"{AT}.headersDir must be a non-empty path"),
    ({"url": "http://h/m.wasm", "caFile": "/ca.pem"}, f"{AT}.caFile needs an https url"),
    ({"url": "https://h/m.wasm", "headers": {}}, f"{AT}: unknown field.s. headers"),
])
def test_bad_sources_are_refused_naming_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_source(raw, WHERE)


def test_a_url_source_with_headers_and_a_ca_bundle() -> None:
    source = parse_source({"url": "https://h.example/m.wasm?sig=hunter2", "headersDir": "/var/run/warmpool/headers/n",
                           "caFile": "/var/run/warmpool/ca/n/ca.crt"}, WHERE)
    assert (source.headers_dir, source.ca_file) == ("/var/run/warmpool/headers/n", "/var/run/warmpool/ca/n/ca.crt")
    for shown in (str(source), repr(source), source.describe()):
        assert "hunter2" not in shown
    assert repr(source) == ("ModuleSource(url='https://h.example/m.wasm?<redacted>', "
                            "headers_dir='/var/run/warmpool/headers/n', ca_file='/var/run/warmpool/ca/n/ca.crt')")
    assert repr(parse_source({"oci": {"repository": "r.example/m", "reference": "v2"}}, WHERE)) == \
        "ModuleSource(oci='oci://r.example/m:v2')"


# --- header files -----------------------------------------------------------------------------------
def secret_mount(tmp_path: Path, values: dict[str, bytes]) -> Path:
    """A directory laid out as the kubelet mounts a Secret: the files live in a timestamped directory, `..data`
    links to it, and each key is a symlink through `..data`."""
    root = tmp_path / "headers"
    stamped = root / "..2026_12_01_00_00_00.000000001"
    stamped.mkdir(parents=True)
    for name, value in values.items():
        (stamped / name).write_bytes(value)
    os.symlink(stamped.name, root / "..data")
    for name in values:
        os.symlink(f"..data/{name}", root / name)
    return root


def test_each_file_of_a_mounted_secret_is_one_header(tmp_path: Path) -> None:
    root = secret_mount(tmp_path, {"Authorization": b"Bearer t0ken-hunter2\n", "X-Api-Key": b"  k3y\t"})
    (root / "subdir").mkdir()  # not a regular file: skipped
    assert read_headers(str(root)) == {"Authorization": "Bearer t0ken-hunter2", "X-Api-Key": "k3y"}


@pytest.mark.parametrize(("name", "value", "why"), [
    ("X-Token", b"abc\r\nX-Injected: 1", "line break or control character"),
    ("X-Token", b"abc\ndef", "line break or control character"),
    ("X-Token", b"abc\x00def", "line break or control character"),
    ("X Token", b"abc", "not a valid header name"),
    ("X-Token:", b"abc", "not a valid header name"),
    ("Host", b"evil.example", "set by the fetch itself"),
    ("Content-Length", b"0", "set by the fetch itself"),
    ("X-Token", b"\xff\xfe", "not text"),
])
def test_bad_header_files_are_refused_naming_the_file_never_the_value(tmp_path: Path, name: str, value: bytes,
                                                                      why: str) -> None:
    root = tmp_path / "h"
    root.mkdir()
    (root / name).write_bytes(value)
    with pytest.raises(ModuleError, match=why) as caught:
        read_headers(str(root))
    assert str(root) in caught.value.message
    assert "abc" not in caught.value.message
    assert "evil" not in caught.value.message


def test_header_files_are_bounded_and_a_missing_directory_is_named(tmp_path: Path) -> None:
    root = tmp_path / "h"
    root.mkdir()
    (root / "X-Big").write_bytes(b"a" * ((8 << 10) + 1))
    with pytest.raises(ModuleError, match="over"):
        read_headers(str(root))
    (root / "X-Big").unlink()
    (root / "x-dup").write_text("1")
    (root / "X-DUP").write_text("2")
    with pytest.raises(ModuleError, match="given twice"):
        read_headers(str(root))
    with pytest.raises(ModuleError, match=f"cannot read headersDir {tmp_path}/absent"):
        read_headers(str(tmp_path / "absent"))


def test_a_ca_file_that_is_not_pem_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ModuleError, match=f"caFile {bad} holds no usable PEM certificate"):
        ssl_context(str(bad))
    with pytest.raises(ModuleError, match="cannot read caFile"):
        ssl_context(str(tmp_path / "absent.crt"))


def test_a_ca_file_over_its_cap_or_not_a_regular_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.crt"
    big.write_bytes(b"#" * ((1 << 20) + 1))
    with pytest.raises(ModuleError, match=f"caFile {big} is {(1 << 20) + 1} bytes, over the cap of {1 << 20}"):
        ssl_context(str(big))
    fifo = tmp_path / "fifo.crt"
    os.mkfifo(fifo)  # no writer: a blocking open or read would never return
    with pytest.raises(ModuleError, match=f"caFile {fifo} is not a regular file"):
        ssl_context(str(fifo))
