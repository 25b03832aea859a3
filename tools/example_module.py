"""Keep the examples' embedded module and hash in step with the runtime's classify.wat (--check to verify)."""

from __future__ import annotations

import argparse
import base64
import re
import sys
from pathlib import Path

import wasmtime

from warmpool_runtime.examples import example_wat
from warmpool_runtime.modules import sha256_hex

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = (ROOT / "examples" / "classify.yaml", ROOT / "examples" / "classify-autoscaled.yaml",
             ROOT / "examples" / "kustomize" / "base" / "module.yaml",
             ROOT / "examples" / "kustomize" / "base" / "warmpool.yaml")


def render(text: str) -> str:
    data = bytes(wasmtime.wat2wasm(example_wat("classify")))
    text = re.sub(r"(classify\.wasm: )\S+", lambda m: m.group(1) + base64.b64encode(data).decode(), text)
    return re.sub(r"(sha256: )[0-9a-f]{64}", lambda m: m.group(1) + sha256_hex(data), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the manifest is stale")
    args = parser.parse_args()
    stale = []
    for manifest in MANIFESTS:
        current = manifest.read_text()
        wanted = render(current)
        if current == wanted:
            continue
        if args.check:
            stale.append(manifest)
        else:
            manifest.write_text(wanted)
    for manifest in stale:
        print(f"{manifest} is stale: run python -m tools.example_module", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
