"""Where the API server is and how the operator proves who it is: the pod's service account,
or a kubeconfig. Parsing is pure (`from_kubeconfig`, `in_cluster`); `load` reads the files.

Why our own reader, not the official client's: that client brings about 20 MiB of modules
(every API model, pydantic, requests) into the operator's memory for these few fields
(issue 11); kopf's built-in login reads only $KUBECONFIG, and a token only once. What is
read, as kubectl reads it:
- cluster: `server`, `certificate-authority` (relative to the kubeconfig's folder) or
  `certificate-authority-data`, `insecure-skip-tls-verify`;
- user: `token` or `tokenFile`, `client-certificate(-data)` and `client-key(-data)`.
A user that authenticates another way (`exec`, `auth-provider`, `username`) is refused with
the field named: the operator runs with its service account; a kubeconfig is for tests and
local runs.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
UNSUPPORTED_USER_FIELDS = ("exec", "auth-provider", "username")


class CredentialsError(Exception):
    """The kubeconfig cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Credentials:
    server: str                       # https://host:port
    ca_file: str | None = None
    ca_data: str | None = None        # PEM
    insecure: bool = False
    token: str | None = None
    token_file: str | None = None     # read again while running: bound tokens rotate
    cert_file: str | None = None
    cert_data: bytes | None = None    # PEM
    key_file: str | None = None
    key_data: bytes | None = None     # PEM


def in_cluster(environ: Mapping[str, str], root: Path = SERVICE_ACCOUNT) -> Credentials | None:
    """The pod's service account, as the kubelet mounts it, or None outside a pod."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (root / "token").is_file():
        return None
    if ":" in host:   # an IPv6 address
        host = f"[{host}]"
    ca = root / "ca.crt"
    return Credentials(server=f"https://{host}:{port}", token_file=str(root / "token"),
                       ca_file=str(ca) if ca.is_file() else None)


def _named(doc: Mapping[str, Any], section: str, name: str, where: str) -> Mapping[str, Any]:
    """The `section` entry called `name` (kubeconfigs list them as {name, <kind>})."""
    inner = section[:-1]   # clusters -> cluster
    for item in doc.get(section) or []:
        if isinstance(item, Mapping) and item.get("name") == name:
            value = item.get(inner) or {}
            if not isinstance(value, Mapping):
                raise CredentialsError(f"{where}: {section}[{name}].{inner}: expected a mapping")
            return value
    raise CredentialsError(f"{where}: {section}: no entry named {name!r}")


def _data(value: Any, field: str, where: str) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialsError(f"{where}: {field}: not base64") from None


def _path(value: Any, base: Path) -> str | None:
    return None if not value else str(base / os.path.expanduser(str(value)))


def from_kubeconfig(doc: Any, where: str, base: Path) -> Credentials:
    """The current context's credentials from a parsed kubeconfig; `where` names the file
    in errors, `base` is its folder (relative paths are relative to it)."""
    if not isinstance(doc, Mapping):
        raise CredentialsError(f"{where}: expected a kubeconfig mapping")
    current = doc.get("current-context")
    if not current:
        raise CredentialsError(f"{where}: current-context: not set")
    context = _named(doc, "contexts", str(current), where)
    cluster_name, user_name = context.get("cluster"), context.get("user")
    if not cluster_name:
        raise CredentialsError(f"{where}: contexts[{current}].context.cluster: not set")
    cluster = _named(doc, "clusters", str(cluster_name), where)
    user = _named(doc, "users", str(user_name), where) if user_name else {}
    for field in UNSUPPORTED_USER_FIELDS:
        if user.get(field):
            raise CredentialsError(
                f"{where}: users[{user_name}].user.{field}: not supported by the operator's "
                "client; give it a token, tokenFile or client certificate")
    has_cert = bool(user.get("client-certificate") or user.get("client-certificate-data"))
    has_key = bool(user.get("client-key") or user.get("client-key-data"))
    if has_cert != has_key:
        missing = "client-key" if has_cert else "client-certificate"
        raise CredentialsError(f"{where}: users[{user_name}].user.{missing}(-data): not set; "
                               "a client certificate needs its key, and a key its certificate")
    server = cluster.get("server")
    if not server:
        raise CredentialsError(f"{where}: clusters[{cluster_name}].cluster.server: not set")
    prefix, user_prefix = f"clusters[{cluster_name}].cluster.", f"users[{user_name}].user."
    ca_data = _data(cluster.get("certificate-authority-data"),
                    prefix + "certificate-authority-data", where)
    return Credentials(
        server=str(server).rstrip("/"),
        ca_file=_path(cluster.get("certificate-authority"), base),
        ca_data=ca_data.decode() if ca_data is not None else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=str(user["token"]) if user.get("token") else None,
        token_file=_path(user.get("tokenFile"), base),
        cert_file=_path(user.get("client-certificate"), base),
        cert_data=_data(user.get("client-certificate-data"),
                        user_prefix + "client-certificate-data", where),
        key_file=_path(user.get("client-key"), base),
        key_data=_data(user.get("client-key-data"), user_prefix + "client-key-data", where),
    )


def load(kubeconfig: str | None, environ: Mapping[str, str]) -> Credentials:
    """`kubeconfig` when given; else the pod's service account; else the first file of
    $KUBECONFIG, else ~/.kube/config (the official client's order)."""
    if kubeconfig is None:
        pod = in_cluster(environ)
        if pod is not None:
            return pod
    path = kubeconfig or environ.get("KUBECONFIG", "").split(os.pathsep)[0] \
        or os.path.expanduser("~/.kube/config")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"kubeconfig {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CredentialsError(f"kubeconfig {path}: not YAML: {exc}") from None
    return from_kubeconfig(doc, f"kubeconfig {path}", Path(path).parent)
