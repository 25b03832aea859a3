"""Helm for the chart tests, built once from the Go module proxy (see gotools), run on the chart."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.packaging.gotools import ensure_go_tool

HELM_VERSION = "v3.22.0"
"""The newest Helm 3 release when the chart was written; bump it here only."""
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
KUBE_VERSION = "1.31.0"
"""Kubernetes version given to `helm lint/template` (the chart requires >= 1.29)."""
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "warmpool-operator"


def ensure_helm() -> Path:
    """The cached helm binary, built from the Go module proxy when absent (minutes, once per machine)."""
    return ensure_go_tool("helm", HELM_MODULE, HELM_VERSION)


class UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path
    """Scratch HOME for helm's config, cache and data: the tests never touch the user's."""

    def run(self, *args: str, check: bool = True, kubeconfig: Path | None = None,
            timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
        """A helm command; without `kubeconfig` it can reach no cluster."""
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(kubeconfig or self.home / "no-kubeconfig"),
        }
        result = subprocess.run([str(self.binary), *args], env=env, capture_output=True, text=True, check=False,
                                timeout=timeout_s)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def run_with_kubeconfig(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """A helm command against a real cluster; failing fails the test with helm's output."""
        return self.run(*args, kubeconfig=kubeconfig, timeout_s=300)

    def values_file(self, values: dict[str, Any] | None, name: str) -> list[str]:
        if not values:
            return []
        path = self.home / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return ["--values", str(path)]

    def lint(self, values: dict[str, Any] | None = None, name: str = "lint") -> subprocess.CompletedProcess[str]:
        return self.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION,
                        *self.values_file(values, name), check=False)

    def template_result(
        self, values: dict[str, Any] | None = None, *, name: str = "values", namespace: str = "warmpool-system",
        release: str = "wp",
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION,
            *self.values_file(values, name), check=False,
        )

    def template(
        self, values: dict[str, Any] | None = None, *, name: str = "values", namespace: str = "warmpool-system",
        release: str = "wp",
    ) -> list[dict[str, Any]]:
        """Rendered manifests, the CRDs (templates/crds.yaml) and the `helm test` pod included."""
        result = self.template_result(values, name=name, namespace=namespace, release=release)
        if result.returncode != 0:
            raise AssertionError(f"helm template failed:\n{result.stderr}")
        return [doc for doc in yaml.load_all(result.stdout, Loader=UniqueKeyLoader) if doc]

    def notes(self, values: dict[str, Any] | None = None, *, namespace: str = "warmpool-system") -> str:
        """NOTES.txt as `helm install` would print it (`helm template` leaves it out).

        The chart is copied and given one extra template that renders NOTES.txt with `tpl`.
        """
        copy = self.home / "notes-chart"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(CHART, copy)
        (copy / "notes.tpl").write_text((CHART / "templates" / "NOTES.txt").read_text())
        (copy / "templates" / "zz-notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered-notes\ndata:\n"
            '  notes: |\n    {{- tpl (.Files.Get "notes.tpl") . | nindent 4 }}\n'
        )
        result = self.run(
            "template", "wp", str(copy), "--namespace", namespace, "--kube-version", KUBE_VERSION,
            "--show-only", "templates/zz-notes.yaml", *self.values_file(values, "notes"), check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"rendering NOTES.txt failed:\n{result.stderr}")
        rendered: str = yaml.safe_load(result.stdout)["data"]["notes"]
        return rendered
