"""CRDs installed outside the chart, on the real local control plane: `crds.install=false` leaves them be, and
the documented labels and annotations let a release adopt them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.local_cluster import running_control_plane
from tests.packaging.helm import CHART, Helm
from tests.packaging.test_helm_install import Kube

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRDS = tuple(sorted(doc["metadata"]["name"] for path in (ROOT / "crds").glob("*.yaml")
                    for doc in yaml.safe_load_all(path.read_text()) if doc))
"""Every CRD the chart ships (the fixture applies them all outside the chart)."""
RELEASE, NAMESPACE = "warmpool-operator", "warmpool-system"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """A fresh local control plane whose CRDs were applied by hand from crds/, as without the chart."""
    def say(line: str) -> None:
        print(f"[adoption e2e] {line}", file=sys.stderr, flush=True)

    with running_control_plane(tmp_path_factory.mktemp("adoption-cluster"), say) as running:
        kube = Kube(running.binary, running.kubeconfig)
        kube.run("apply", "--server-side", f"--filename={ROOT / 'crds'}")
        for crd in CRDS:
            kube.run("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        yield kube


def install(helm: Helm, cluster: Kube, *values: str) -> tuple[int, str]:
    result = helm.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace", *values,
                      kubeconfig=cluster.kubeconfig, timeout_s=300, check=False)
    return result.returncode, result.stdout + result.stderr


def test_a_default_install_refuses_crds_it_does_not_own(cluster: Kube, helm: Helm) -> None:
    code, output = install(helm, cluster)
    assert code != 0
    # The message docs/troubleshooting.md quotes.
    assert "exists and cannot be imported into the current release: invalid ownership metadata" in output
    troubleshooting = (ROOT / "docs" / "troubleshooting.md").read_text()
    assert "exists and cannot be imported into the current release: invalid ownership metadata" in troubleshooting


def test_crds_install_false_leaves_them_and_creates_the_peering_object(cluster: Kube, helm: Helm) -> None:
    code, output = install(helm, cluster, "--set", "crds.install=false")
    assert code == 0, output
    assert "STATUS: deployed" in output
    assert cluster.json("get", "clusterkopfpeering", "warmpool")["metadata"]["name"] == "warmpool"
    for crd in CRDS:
        assert "meta.helm.sh/release-name" not in (cluster.json("get", "crd", crd)["metadata"].get("annotations") or {})
    helm.run("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", kubeconfig=cluster.kubeconfig, timeout_s=300)
    for crd in CRDS:  # not the release's: uninstall leaves them
        assert cluster.json("get", "crd", crd)["metadata"]["name"] == crd


def test_labelled_and_annotated_crds_are_adopted_by_the_release(cluster: Kube, helm: Helm) -> None:
    # The commands docs/troubleshooting.md and the chart README give.
    cluster.run("label", "crd", *CRDS, "app.kubernetes.io/managed-by=Helm")
    cluster.run("annotate", "crd", *CRDS, f"meta.helm.sh/release-name={RELEASE}",
                f"meta.helm.sh/release-namespace={NAMESPACE}")
    code, output = install(helm, cluster)
    assert code == 0, output
    for crd in CRDS:
        annotations = cluster.json("get", "crd", crd)["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep"
        assert annotations["meta.helm.sh/release-name"] == RELEASE
    deployment = cluster.json("-n", NAMESPACE, "get", "deployment", "warmpool-operator")
    assert deployment["metadata"]["name"] == "warmpool-operator"  # release named like the chart: no prefix
