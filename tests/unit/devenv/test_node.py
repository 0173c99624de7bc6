"""The real node's configurations, the image variants and the image input hash: pure."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from devenv import addons, imagebuild, images, netns, node


def test_containerd_keeps_every_path_under_its_folder(tmp_path: Path) -> None:
    config = tomllib.loads(node.containerd_config(tmp_path, "localhost/pause:x"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    paths = [config["root"], config["state"], config["grpc"]["address"],
             config["plugins"]["io.containerd.internal.v1.opt"]["path"],
             cri["cni"]["conf_dir"],
             cri["containerd"]["runtimes"]["runc"]["options"]["Root"]]
    assert all(p.startswith(str(tmp_path)) for p in paths), paths
    assert cri["sandbox_image"] == "localhost/pause:x"
    # This VM lacks CAP_SYS_RESOURCE: without it runc create fails for every sandbox.
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True


def test_pods_get_addresses_on_the_bridge_with_the_node_as_gateway() -> None:
    [bridge, portmap] = node.cni_config()["plugins"]
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"]) == ("bridge", "cni0", True)
    [[pool]] = bridge["ipam"]["ranges"]
    assert (pool["subnet"], pool["gateway"]) == (netns.POD_CIDR, netns.NODE_IP)
    assert portmap["type"] == "portmap"
    json.dumps(node.cni_config())   # what containerd reads


def test_kubelet_leaves_the_hosts_kernel_settings_and_cgroups_alone(tmp_path: Path) -> None:
    config = node.kubelet_config(tmp_path / "ca.crt", tmp_path / "sock", 10250, 10248,
                                 tmp_path / "resolv.conf", tmp_path / "logs")
    assert config["protectKernelDefaults"] is False   # the values are presented (holder)
    assert config["cgroupRoot"] == f"/{node.CGROUP_ROOT}"
    assert config["failCgroupV1"] is False
    assert config["clusterDNS"] == [netns.DNS_SERVICE_IP]
    assert config["authentication"]["webhook"]["enabled"] is True   # metrics-server's token
    assert config["authorization"]["mode"] == "Webhook"


def test_holder_presents_every_kernel_setting_kubelet_would_write(tmp_path: Path) -> None:
    script = node.holder_script(tmp_path, node.KERNEL_TUNABLES)
    for key in node.KERNEL_TUNABLES:
        assert f"/proc/sys/{key}\n" in script
    assert script.rstrip().endswith("exec catatonit -P")
    # the node's own /run, /var/lib and /var/log: nothing it writes there reaches the host
    for path in ("/run", "/var/lib", "/var/log"):
        assert f" {path}\n" in script


def test_kube_proxy_does_not_touch_the_hosts_conntrack_settings() -> None:
    config = node.kube_proxy_config("/k", 1, 2)
    assert config["conntrack"] == {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                                   "tcpCloseWaitTimeout": "0s"}
    assert config["iptables"]["masqueradeAll"] is True


def test_external_server_is_a_selectorless_service_with_the_node_as_endpoint() -> None:
    service, slice_ = addons.service_objects(addons.External("redis", "redis-master", 6379,
                                                              41234))
    assert "selector" not in service["spec"]
    assert service["spec"]["ports"] == [{"name": "tcp-6379", "port": 6379,
                                         "targetPort": 41234, "protocol": "TCP"}]
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "redis-master"
    assert slice_["endpoints"][0]["addresses"] == [netns.NODE_IP]
    assert slice_["ports"] == [{"name": "tcp-6379", "port": 41234, "protocol": "TCP"}]


def test_cluster_dns_has_the_address_kubelet_gives_pods() -> None:
    service, _ = addons.service_objects(addons.External("kube-system", "kube-dns", 53, 53,
                                                         ("UDP", "TCP")))
    assert service["spec"]["clusterIP"] == netns.DNS_SERVICE_IP
    assert [p["protocol"] for p in service["spec"]["ports"]] == ["UDP", "TCP"]


@pytest.mark.parametrize(("tag", "copies", "wrapped"), [
    ("1.4.0", None, False),
    ("1.5.0", 1, False),
    ("1.6.0", 1, False),
    ("1.4.1-badmigration", 1, False),
    ("1.4.0-unready", 0, True),
    ("1.5.0-unready", 1, True),
    ("1.4.0-crash", 0, True),
    ("1.4.0-oom", 0, True),
])
def test_variants_are_thin_images_on_the_service_image(tag: str, copies: int | None,
                                                       wrapped: bool) -> None:
    run = images.parse(f"r/authorization-service:{tag}")
    files = images.variant_files("localhost/authorization-service:dev-x", run)
    if copies is None:
        assert files is None
        return
    assert files is not None
    lines = files["Containerfile"].splitlines()
    assert lines[0] == "FROM localhost/authorization-service:dev-x"
    assert sum(1 for line in lines if line.startswith("COPY migrations")) == copies
    assert ("authz-service" in files) is wrapped
    if wrapped:
        script = files["authz-service"]
        assert script.startswith("#!/bin/sh\n")
        assert 'if [ "$1" = serve ]' in script   # only serving misbehaves
        assert "authz_service.cli" in script       # migrate is the real CLI


def test_every_test_tag_names_an_image() -> None:
    for tag in images.TEST_TAGS:
        images.parse(f"{images.REPOSITORIES[0]}:{tag}")


def test_tree_hash_follows_contents_not_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = imagebuild.tree_hash(tmp_path, ("pkg",))
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    assert imagebuild.tree_hash(tmp_path, ("pkg",)) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert imagebuild.tree_hash(tmp_path, ("pkg",)) != before
    assert imagebuild.tree_hash(tmp_path, ("pkg",), ("base-1",)) != imagebuild.tree_hash(
        tmp_path, ("pkg",), ("base-2",))


def test_the_image_set_built_on_the_host_is_read_back_inside(tmp_path: Path) -> None:
    def b(ref: str) -> imagebuild.Built:
        return imagebuild.Built(ref, tmp_path / f"{ref.replace('/', '_')}.tar")
    images = imagebuild.ImageSet(pause=b("p:1"), service=b("s:1"), operator=b("o:1"),
                                 tags={"registry.example/authorization-service:1.4.0": b("s:1")})
    assert imagebuild.from_state(json.loads(json.dumps(imagebuild.to_state(images)))) == images
