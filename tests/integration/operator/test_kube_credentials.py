"""The operator's own client (credentials.py, apiclient.py) against the real local API
server: each way a kubeconfig can name the server's CA and the operator's identity, and the
errors when TLS or the identity is wrong."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz_operator import credentials
from authz_operator.kube import Kube, KubeError
from devenv import paths
from tests.conftest import DevEnv

pytestmark = pytest.mark.cluster
PKI = paths.RUN / "pki"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _kubeconfig(devenv: DevEnv, tmp_path: Path, cluster: dict[str, Any],
                user: dict[str, Any]) -> str:
    """A kubeconfig for the environment's API server with this CA setting and user."""
    server = credentials.load(devenv.kubeconfig, {}).server
    doc = {"current-context": "t",
           "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
           "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
           "users": [{"name": "u", "user": user}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _token(devenv: DevEnv) -> str:
    return str(credentials.load(devenv.kubeconfig, {}).token)


def _reads(kubeconfig: str) -> Any:
    kube = Kube.connect(kubeconfig)
    try:
        return kube.get("ServiceAccount", "default", "default")
    finally:
        kube.close()


def test_a_token_and_a_ca_file(cluster: DevEnv) -> None:
    account = _reads(cluster.kubeconfig)
    assert account["metadata"]["name"] == "default"


def test_a_client_certificate_and_a_ca_given_as_data(cluster: DevEnv, tmp_path: Path) -> None:
    config = _kubeconfig(
        cluster, tmp_path, {"certificate-authority-data": _b64(PKI / "ca.crt")},
        {"client-certificate-data": _b64(PKI / "apiserver-kubelet-client.crt"),
         "client-key-data": _b64(PKI / "apiserver-kubelet-client.key")})
    assert _reads(config)["metadata"]["name"] == "default"


def test_a_token_file_without_verifying_the_server(cluster: DevEnv, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(_token(cluster) + "\n")
    config = _kubeconfig(cluster, tmp_path, {"insecure-skip-tls-verify": True},
                         {"tokenFile": "token"})   # relative to the kubeconfig's folder
    assert _reads(config)["metadata"]["name"] == "default"


def test_a_server_certificate_from_another_ca_is_refused(cluster: DevEnv,
                                                         tmp_path: Path) -> None:
    config = _kubeconfig(cluster, tmp_path,
                         {"certificate-authority": str(PKI / "front-proxy-ca.crt")},
                         {"token": _token(cluster)})
    with pytest.raises(KubeError) as caught:
        _reads(config)
    assert caught.value.status == 0
    assert caught.value.transient
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_a_wrong_token_is_the_api_servers_401(cluster: DevEnv, tmp_path: Path) -> None:
    config = _kubeconfig(cluster, tmp_path, {"certificate-authority": str(PKI / "ca.crt")},
                         {"token": "not-a-token"})
    with pytest.raises(KubeError) as caught:
        _reads(config)
    assert (caught.value.status, caught.value.message) == (401, "Unauthorized")
    assert not caught.value.transient
