"""The CNCF Wasm OCI artifact: a manifest whose config is `application/vnd.wasm.config.v0+json` and
whose single layer is the module (`application/wasm`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from warmpool.module.distribution import sha256_digest

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.wasm.config.v0+json"
LAYER_MEDIA_TYPE = "application/wasm"
TITLE_ANNOTATION = "org.opencontainers.image.title"
CREATED_ANNOTATION = "org.opencontainers.image.created"
WASM_ARCHITECTURE = "wasm"
MODULE_OS = "wasip1"
"""The spec's `os` for core modules (components say wasip2)."""


class ArtifactError(ValueError):
    """A manifest that is not a Wasm artifact this tool can use; the message says which field."""


@dataclass(frozen=True)
class Artifact:
    """The three pieces pushed for one module: the config blob, the module blob, the manifest."""

    config: bytes
    module: bytes
    manifest: bytes

    @property
    def module_digest(self) -> str:
        return sha256_digest(self.module)

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)


@dataclass(frozen=True)
class WasmLayer:
    digest: str
    size: int
    title: str | None


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def build_artifact(module: bytes, *, title: str, created: dt.datetime) -> Artifact:
    """Config and manifest for one core module, serialised once (their digests are what gets pinned)."""
    stamp = created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    layer_digest = sha256_digest(module)
    config = _json({"created": stamp, "architecture": WASM_ARCHITECTURE, "os": MODULE_OS,
                    "layerDigests": [layer_digest]})
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": len(module),
                    "annotations": {TITLE_ANNOTATION: title}}],
        "annotations": {CREATED_ANNOTATION: stamp},
    })
    return Artifact(config=config, module=module, manifest=manifest)


def wasm_layer(manifest: dict[str, Any], where: str) -> WasmLayer:
    """The manifest's one `application/wasm` layer; anything else is refused naming the field."""
    media_type = manifest.get("mediaType")
    if media_type not in (None, MANIFEST_MEDIA_TYPE):
        raise ArtifactError(f"{where}: mediaType {media_type!r} is not an OCI image manifest "
                            f"(an index or a Docker image cannot hold a Wasm module artifact)")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise ArtifactError(f"{where}: the manifest has no `layers` list")
    wasm = [layer for layer in layers if isinstance(layer, dict) and layer.get("mediaType") == LAYER_MEDIA_TYPE]
    if len(wasm) != 1:
        kinds = sorted({str(layer.get("mediaType")) for layer in layers if isinstance(layer, dict)})
        raise ArtifactError(f"{where}: expected exactly one {LAYER_MEDIA_TYPE} layer, found {len(wasm)} "
                            f"(layer media types: {', '.join(kinds) or 'none'})")
    layer = wasm[0]
    digest, size = layer.get("digest"), layer.get("size")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise ArtifactError(f"{where}: layers[].digest {digest!r} is not sha256:<64 hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArtifactError(f"{where}: layers[].size {size!r} is not a byte count")
    annotations = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else {}
    title = annotations.get(TITLE_ANNOTATION) if annotations else None
    return WasmLayer(digest=digest, size=size, title=title if isinstance(title, str) else None)
