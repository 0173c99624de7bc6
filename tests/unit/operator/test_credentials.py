"""Where the operator's own client finds the API server and its identity (credentials.py,
apiclient.Token): plain data and files in a temporary folder."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz_operator import apiclient
from authz_operator.credentials import (
    Credentials,
    CredentialsError,
    from_kubeconfig,
    in_cluster,
    load,
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig(user: dict[str, Any] | None = None, **cluster: Any) -> dict[str, Any]:
    return {
        "current-context": "dev",
        "contexts": [{"name": "other", "context": {"cluster": "x", "user": "x"}},
                     {"name": "dev", "context": {"cluster": "local", "user": "me"}}],
        "clusters": [{"name": "local",
                      "cluster": {"server": "https://127.0.0.1:6443/", **cluster}}],
        "users": [{"name": "me", "user": user if user is not None else {"token": "t0k"}}],
    }


def test_the_current_contexts_cluster_and_user() -> None:
    doc = kubeconfig({"client-certificate": "certs/me.crt", "client-key-data": _b64("KEY"),
                      "tokenFile": "/run/token"},
                     **{"certificate-authority": "ca.crt", "insecure-skip-tls-verify": True})
    assert from_kubeconfig(doc, "kubeconfig k", Path("/home/me/.kube")) == Credentials(
        server="https://127.0.0.1:6443", ca_file="/home/me/.kube/ca.crt", insecure=True,
        token_file="/run/token", cert_file="/home/me/.kube/certs/me.crt", key_data=b"KEY")


def test_a_vanished_token_file_is_no_answer_tried_again(tmp_path: Path) -> None:
    client = apiclient.ApiClient(Credentials(server="https://127.0.0.1:1",
                                             token_file=str(tmp_path / "gone")))
    with pytest.raises(apiclient.ConnectionFailed, match="gone"):
        client.send("GET", "/api", [], None, {})


def test_data_fields_are_decoded() -> None:
    doc = kubeconfig({"client-certificate-data": _b64("CERT"), "client-key-data": _b64("K")},
                     **{"certificate-authority-data": _b64("PEM CA")})
    creds = from_kubeconfig(doc, "k", Path("."))
    assert (creds.ca_data, creds.cert_data, creds.key_data) == ("PEM CA", b"CERT", b"K")
    assert creds.token is None
    assert not creds.insecure


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("current-context"), "kubeconfig k: current-context: not set"),
    (lambda d: d.update({"current-context": "gone"}), "kubeconfig k: contexts: no entry named "
                                                      "'gone'"),
    (lambda d: d["clusters"][0]["cluster"].pop("server"),
     "kubeconfig k: clusters[local].cluster.server: not set"),
    (lambda d: d["users"][0].update({"user": {"exec": {"command": "aws"}}}),
     "kubeconfig k: users[me].user.exec: not supported by the operator's client; give it a "
     "token, tokenFile or client certificate"),
    (lambda d: d["users"][0].update({"user": {"auth-provider": {"name": "gcp"}}}),
     "kubeconfig k: users[me].user.auth-provider: not supported"),
    (lambda d: d["users"][0].update({"user": {"client-certificate": "c",
                                              "client-key-data": "not base64!"}}),
     "kubeconfig k: users[me].user.client-key-data: not base64"),
    (lambda d: d["users"][0].update({"user": {"client-certificate": "me.crt"}}),
     "kubeconfig k: users[me].user.client-key(-data): not set; a client certificate needs "
     "its key"),
    (lambda d: d["users"][0].update({"user": {"client-key-data": _b64("K")}}),
     "kubeconfig k: users[me].user.client-certificate(-data): not set"),
    (lambda d: d["clusters"][0].update({"cluster": "text"}),
     "kubeconfig k: clusters[local].cluster: expected a mapping"),
])
def test_what_cannot_be_used_is_named(change: Any, message: str) -> None:
    doc = kubeconfig()
    change(doc)
    with pytest.raises(CredentialsError) as caught:
        from_kubeconfig(doc, "kubeconfig k", Path("."))
    assert str(caught.value).startswith(message)


def test_a_kubeconfig_that_is_not_a_mapping() -> None:
    with pytest.raises(CredentialsError, match="kubeconfig k: expected a kubeconfig mapping"):
        from_kubeconfig(["a"], "kubeconfig k", Path("."))


def _service_account(root: Path, ca: bool = True) -> Path:
    root.mkdir()
    (root / "token").write_text("pod-token\n")
    if ca:
        (root / "ca.crt").write_text("CA")
    return root


def test_in_a_pod_the_service_account(tmp_path: Path) -> None:
    root = _service_account(tmp_path / "sa")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster(env, root) == Credentials(
        server="https://10.96.0.1:443", ca_file=str(root / "ca.crt"),
        token_file=str(root / "token"))
    env6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster(env6, root).server == "https://[fd00::1]:443"   # type: ignore[union-attr]


def test_outside_a_pod_no_service_account(tmp_path: Path) -> None:
    root = _service_account(tmp_path / "sa")
    assert in_cluster({}, root) is None
    assert in_cluster({"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"},
                      tmp_path / "absent") is None


def test_load_reads_the_given_file_or_the_first_of_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(None, **{"certificate-authority": "ca.crt"})))
    given = load(str(path), {})
    assert given.token == "t0k"
    assert given.ca_file == str(tmp_path / "ca.crt")
    assert load(None, {"KUBECONFIG": f"{path}:/elsewhere"}) == given


def test_load_names_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=f"kubeconfig {tmp_path}/none: No such file"):
        load(str(tmp_path / "none"), {})
    broken = tmp_path / "broken"
    broken.write_text("a: [")
    with pytest.raises(CredentialsError, match=f"kubeconfig {broken}: not YAML"):
        load(str(broken), {})


def test_a_token_file_is_read_again_after_a_while(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    now = [100.0]
    token = apiclient.Token(Credentials(server="s", token_file=str(token_file)),
                            clock=lambda: now[0])
    assert token.value() == "first"
    token_file.write_text("second\n")
    now[0] += apiclient.TOKEN_REREAD - 1
    assert token.value() == "first"   # read at most once a minute
    now[0] += 1
    assert token.value() == "second"
    assert apiclient.Token(Credentials(server="s", token="fixed")).value() == "fixed"
