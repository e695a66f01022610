"""deploy/: every Kubernetes object against the API's schemas, every config against our models.

- Built-in kinds: `kubernetes-validate`'s bundled OpenAPI schemas (offline, strict: unknown
  fields are errors) for the oldest and newest Kubernetes minor versions we support.
- NetworkAttachmentDefinitions: the CRD's schema (deploy/crd/, from the NPWG specification).
- Every embedded CNI config: decoded by `model/cni.parse_netconf`, as the plugin will.
- The device plugin's ConfigMap: decoded by `model/dp_config.parse_config`, as the agent will.
- The DaemonSet's command lines: parsed by the real CLI's commands.
- The image's name and tag: one value, deploy/IMAGE, everywhere it appears.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

import sriovkit
from sriovkit.commands.agent import agent as agent_command
from sriovkit.commands.agent_status import agent_status as agent_status_command
from sriovkit.model.cni import parse_netconf
from sriovkit.model.dp_config import parse_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IMAGE = (DEPLOY / "IMAGE").read_text().strip()
# The oldest and newest minor versions whose schemas kubernetes-validate bundles; the manifests
# use nothing newer than the oldest.
K8S_VERSIONS = ("1.25.0", "1.37.0")
NAD = ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")
RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
# The node paths the agent needs (issue 14), each mounted at the same path inside the container.
REQUIRED_MOUNTS = {
    "/sys", "/dev", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet/pod-resources",
    "/var/run/k8s.cni.cncf.io/devinfo", "/var/run/cdi", "/opt/cni/bin", "/var/lib/cni",
    "/var/lib/sriovkit", "/run/sriovkit", "/run/netns",
}  # fmt: skip


def manifests() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")


def objects() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in manifests():
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            assert isinstance(doc, dict), f"{path}: document {index} is not an object"
            out.append((f"{path.relative_to(DEPLOY)}#{index}", doc))
    return out


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in objects() if doc["kind"] == kind]


def daemonset() -> dict[str, Any]:
    (ds,) = of_kind("DaemonSet")
    return ds


def agent_container() -> dict[str, Any]:
    (container,) = daemonset()["spec"]["template"]["spec"]["containers"]
    return container


def pools() -> set[str]:
    """prefix/name of every pool in the ConfigMap, through our own config model."""
    (cm,) = [cm for cm in of_kind("ConfigMap") if cm["metadata"]["name"] == "sriovkit-pools"]
    config = parse_config(cm["data"]["config.json"])
    return {r.full_name for r in config.resources}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), [o for o in objects() if o[1]["kind"] != NAD[1]])
def test_builtin_objects_match_the_kubernetes_schemas(
    where: str, doc: dict[str, Any], version: str
) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where} is not a valid {doc['kind']} for Kubernetes {version}: {exc}")


def test_network_attachment_definitions_match_their_crd() -> None:
    (crd,) = of_kind("CustomResourceDefinition")
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == ("k8s.cni.cncf.io", NAD[1])
    (served,) = crd["spec"]["versions"]
    schema = served["schema"]["openAPIV3Schema"]
    nads = [(w, d) for w, d in objects() if (d["apiVersion"], d["kind"]) == NAD]
    assert len(nads) == 2
    for where, doc in nads:
        assert doc["apiVersion"] == f"{crd['spec']['group']}/{served['name']}"
        jsonschema.validate(doc, schema)
        assert set(doc["spec"]) == {"config"}, where
    # The schema does refuse what it should (it is not vacuous).
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": {"config": {"type": "sriov"}}}, schema)


def test_every_embedded_cni_config_decodes_with_our_model() -> None:
    available = pools()
    seen = 0
    for doc in of_kind(NAD[1]):
        conf = parse_netconf(doc["spec"]["config"].encode())
        assert conf.name == doc["metadata"]["name"]
        # Multus adds the device as runtimeConfig.deviceID: none in the config itself.
        assert conf.device_id is None
        assert doc["metadata"]["annotations"][RESOURCE_ANNOTATION] in available
        seen += 1
    # The plain-CNI conflist (no Multus): each plugin as libcni hands it over, with the list's
    # cniVersion and name; a resourceName and no deviceID (the PodResources lookup).
    conflist = json.loads((DEPLOY / "cni/10-sriovkit.conflist").read_text())
    for plugin in conflist["plugins"]:
        full = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
        conf = parse_netconf(json.dumps(full).encode())
        assert conf.device_id is None
        assert conf.resource_name in available
        seen += 1
    assert seen == 3


def test_example_pods_ask_for_pools_that_exist_and_networks_that_exist() -> None:
    available = pools()
    networks = {d["metadata"]["name"] for d in of_kind(NAD[1])}
    pods = of_kind("Pod")
    assert len(pods) == 2
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        asked = {k for k in container["resources"]["limits"] if "/" in k}
        assert len(asked) == 1 and asked <= available
        assert pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] in networks
    (dpdk,) = [p for p in pods if p["metadata"]["name"] == "sriov-dpdk"]
    assert "sriovkit.io/sriov_dpdk" in dpdk["spec"]["containers"][0]["resources"]["limits"]


def test_daemonset_is_privileged_on_the_host_with_the_mounts_the_agent_needs() -> None:
    spec = daemonset()["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    container = agent_container()
    assert container["securityContext"]["privileged"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    host_mounts = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            # Same path inside and out: the shim the agent installs carries the agent's paths.
            assert volume["hostPath"]["path"] == mount["mountPath"], mount
            host_mounts[mount["mountPath"]] = mount
    assert set(host_mounts) == REQUIRED_MOUNTS
    assert host_mounts["/run/netns"]["mountPropagation"] == "HostToContainer"
    (pools_mount,) = [m for m in container["volumeMounts"] if m["name"] == "pools"]
    assert volumes["pools"]["configMap"]["name"] == "sriovkit-pools"
    assert pools_mount["mountPath"] == "/etc/pcidp"


def test_daemonset_command_lines_are_the_real_clis() -> None:
    container = agent_container()
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", (REPO / "Containerfile").read_text(), re.M)
    assert entry is not None
    assert json.loads(entry.group(1)) == ["sriovkit", "agent"]
    # click parses the args as `sriovkit agent` will (an unknown or misspelt flag fails here).
    ctx = agent_command.make_context("agent", list(container["args"]))
    assert ctx.params["device_plugin"] is True
    assert str(ctx.params["dp_config"]) == "/etc/pcidp/config.json"
    assert str(ctx.params["install_cni_dir"]) == "/opt/cni/bin"
    assert str(ctx.params["socket_path"]) == "/run/sriovkit/agent.sock"
    assert str(ctx.params["state_dir"]) == "/var/lib/sriovkit"
    # The shim the agent installs is the one the image builds.
    shim = str(ctx.params["shim_binary"])
    assert f"install -D -m 0755 /tmp/sriov-shim {shim}" in (REPO / "Containerfile").read_text()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        argv = container[probe]["exec"]["command"]
        assert argv[:2] == ["sriovkit", "agent-status"], probe
        agent_status_command.make_context("agent-status", argv[2:])
        # The probe's own timeout fits in kubelet's.
        assert container[probe]["timeoutSeconds"] > float(argv[-1].split("=")[1])


def test_kustomizations_list_existing_files_and_everything_is_listed_or_an_example() -> None:
    listed = set()
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        assert doc["kind"] == "Kustomization"
        for resource in doc["resources"]:
            path = kustomization.parent / resource
            assert path.is_file(), f"{kustomization}: {resource} does not exist"
            listed.add(path)
    # Not applied by a kustomization: the examples, and the CRD that Multus owns.
    rest = {p for p in manifests() if p.parent.name not in ("examples", "crd")}
    assert rest == listed


def test_image_name_and_tag_are_one_value_everywhere() -> None:
    name, _, tag = IMAGE.rpartition(":")
    assert name and tag == sriovkit.__version__
    assert agent_container()["image"] == IMAGE
    assert "$(shell cat deploy/IMAGE)" in (REPO / "Makefile").read_text()
    assert "IMAGE=$(tr -d ' \\n' < deploy/IMAGE)" in (REPO / "scripts/build-image.sh").read_text()
    assert "deploy/IMAGE" in (REPO / "Containerfile").read_text()
    assert IMAGE in (REPO / "README.md").read_text()
    # No other spelling of sriovkit's image anywhere in deploy/ or the docs.
    pattern = re.compile(r"\b[\w./-]*sriovkit:[\w.-]+\b")
    for path in [*DEPLOY.rglob("*"), REPO / "README.md", REPO / "Containerfile"]:
        if path.is_file():
            for found in pattern.findall(path.read_text()):
                assert found == IMAGE, f"{path}: {found} is not {IMAGE}"
