"""Per-tenant bearer tokens on a real `warmpool runtime serve`: 401 without the right one, rotation without restart."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.live import SETTINGS, MountedDir, serve, until
from tests.runtime.wasm import STATEFUL, tuple_entry, write_module
from warmpool_runtime.tokens import MAX_FILE_BYTES, TokenFile, parse_digests, token_digest

pytestmark = pytest.mark.component

ACME, ACME_NEXT, BETA = "acme-t0ken-1", "acme-t0ken-2", "beta-t0ken"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def with_tokens(entry: dict[str, Any], path: Path) -> dict[str, Any]:
    return {**entry, "tokenDigestsFile": str(path)}


def test_digest_files_and_authorization_headers_parse_strictly() -> None:
    good = digest("x")
    digests, ignored = parse_digests(f"# acme\n{good}\n\n  {good.upper()}  \nnot-a-digest\nx-token\n".encode())
    assert (digests, ignored) == (frozenset({bytes.fromhex(good)}), 2)
    assert token_digest(b"Bearer x") == bytes.fromhex(good)
    assert token_digest(b"bearer   x ") == bytes.fromhex(good)
    assert token_digest(b"Basic eA==") is None
    assert token_digest(b"Bearer ") is None
    assert token_digest(b"") is None


def test_an_oversized_digests_file_keeps_the_digests_read_before_and_fails_closed_without_them(tmp_path: Path) -> None:
    path = tmp_path / "acme"
    path.write_text(digest(ACME) + "\n")
    refused: list[str] = []
    tokens = TokenFile(str(path), refused.append)
    acme, acme_next = f"Bearer {ACME}".encode(), f"Bearer {ACME_NEXT}".encode()
    assert tokens.allows(acme)

    path.write_text(digest(ACME_NEXT) + "\n" + "#" * MAX_FILE_BYTES)  # over the cap by its digest line
    assert tokens.refresh()
    assert (tokens.allows(acme), tokens.allows(acme_next), refused) == (True, False, [str(path)])
    assert not tokens.refresh()  # unchanged since: not read, nor counted, again
    assert TokenFile(str(path), refused.append).count == 0  # nothing read before: fail closed
    assert refused == [str(path)] * 2

    path.write_text(digest(ACME_NEXT) + "\n")
    assert tokens.refresh()
    assert (tokens.allows(acme), tokens.allows(acme_next)) == (False, True)
    path.unlink()  # a key removed from the Secret revokes its tokens
    assert tokens.refresh()
    assert not tokens.allows(acme_next)

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: a blocking open or read would never return
    assert TokenFile(str(fifo), refused.append).count == 0
    assert refused[-1] == str(fifo)


def test_a_tuple_with_token_digests_needs_its_own_tenants_token_and_rotates_without_restart(tmp_path: Path) -> None:
    path, sha = write_module(tmp_path, STATEFUL)
    tokens = MountedDir(tmp_path / "tokens")  # a Secret of digests, keys = tenants, updated like the kubelet does
    tokens.write({"acme": digest(ACME) + "\n", "beta": digest(BETA) + "\n"})
    config = tmp_path / "etc" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"tuples": [
        with_tokens(tuple_entry("acme", path, sha, 1), tokens.root / "acme"),
        with_tokens(tuple_entry("beta", path, sha, 1), tokens.root / "beta"),
        with_tokens(tuple_entry("gamma", path, sha, 1), tokens.root / "gamma"),  # no such file: fail closed
        tuple_entry("open", path, sha, 1),
    ], "settings": SETTINGS}))
    # Not watching the config: token files are re-read all the same.
    with serve(config) as (_, client):
        until(lambda: client.readyz()[0] == 200, "ready")

        for token in (None, "wrong", BETA, "", ACME + "x"):
            status, headers, answer = client.call("acme", sha, "add", [1, 2], token=token)
            assert status == 401, token
            assert headers["www-authenticate"].startswith("Bearer")
            assert answer["error"]["code"] == "unauthorized"
            assert BETA not in json.dumps(answer)
            assert "wrong" not in json.dumps(answer)
        # A refused call reveals nothing of the tuple, not even whether an export exists.
        status, _, answer = client.call("acme", sha, "no_such_export", [], token="wrong")
        assert (status, answer["error"]["code"]) == (401, "unauthorized")

        assert client.call("acme", sha, "add", [1, 2], token=ACME)[::2] == (200, {"results": [3]})
        assert client.call("beta", sha, "add", [2, 2], token=BETA)[::2] == (200, {"results": [4]})
        assert client.call("beta", sha, "add", [2, 2], token=ACME)[0] == 401
        assert client.call("gamma", sha, "add", [1, 1], token=ACME)[0] == 401
        assert client.call("gamma", sha, "add", [1, 1])[0] == 401
        assert client.call("open", sha, "add", [1, 1])[::2] == (200, {"results": [2]})
        # The same URL again (a cached route) is checked all the same.
        assert client.call("acme", sha, "add", [1, 2])[0] == 401

        # Rotation: both tokens during the overlap, then only the new one.
        tokens.write({"acme": f"{digest(ACME)}\n{digest(ACME_NEXT)}\n", "beta": digest(BETA) + "\n"})
        until(lambda: client.call("acme", sha, "add", [1, 2], token=ACME_NEXT)[0] == 200, "the new token opens")
        assert client.call("acme", sha, "add", [1, 2], token=ACME)[0] == 200
        tokens.write({"acme": digest(ACME_NEXT) + "\n", "beta": digest(BETA) + "\n"})
        until(lambda: client.call("acme", sha, "add", [1, 2], token=ACME)[0] == 401, "the old token is refused")
        assert client.call("acme", sha, "add", [1, 2], token=ACME_NEXT)[0] == 200

        # An oversized file is refused and counted; the digests read before still hold.
        tokens.write({"acme": digest(ACME) + "\n" + "#" * MAX_FILE_BYTES, "beta": digest(BETA) + "\n"})
        until(lambda: client.metric("tensor_wasm_token_files_refused_total", file=str(tokens.root / "acme")) == 1,
              "the oversized file is refused")
        assert client.call("acme", sha, "add", [1, 2], token=ACME_NEXT)[0] == 200
        assert client.call("acme", sha, "add", [1, 2], token=ACME)[0] == 401

        # A file rewritten in place counts too; emptied, it refuses every call.
        (tokens.root / "..data" / "acme").write_text("")
        until(lambda: client.call("acme", sha, "add", [1, 2], token=ACME_NEXT)[0] == 401, "an empty file refuses")
        assert client.metric("tensor_wasm_unauthorized_total", tenant="acme") >= 9
        assert client.metric("tensor_wasm_unauthorized_total", tenant="gamma") == 2

        _, _, text = client.request("GET", "/metrics")
        for token in (ACME, ACME_NEXT, BETA):
            assert token.encode() not in text
    log = next((tmp_path).glob("runtime-*.log")).read_text()
    for token in (ACME, ACME_NEXT, BETA):
        assert token not in log
