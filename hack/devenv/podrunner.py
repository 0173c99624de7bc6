"""The container runtime for our own image in the local cluster.

kwok fakes every other pod. For a pod bound to a node whose container image is ours, this
runs the container's command from the checkout as a local process with the environment
resolved from the pod spec (ConfigMap and Secret references read from the API), and reports
what really happened in the pod's status:

- Running once the process started; Ready only while it answers its readiness probe;
- for `restartPolicy: Always`, a process that exits is restarted with a short back-off and
  the pod shows CrashLoopBackOff and its restart count in between;
- for Job pods, Succeeded or Failed by the exit code, with the container's termination
  message taken from the file the process wrote (TERMINATION_MESSAGE_PATH points it at a
  file of ours instead of /dev/termination-log);
- a missing ConfigMap/Secret or key leaves the container waiting in
  CreateContainerConfigError, retried until it appears, as a kubelet does.

PORT is remapped to a free loopback port; the mapping is written next to the pod's log in
`.local/run/pods/<namespace>_<pod>.json` (see `endpoint`). Probes are checked every half
second from the start (initialDelaySeconds and periodSeconds are not honoured, to keep tests
quick); liveness probes honour their delay, period and threshold, and a container that
fails them is killed and restarted.

Run as `python -m devenv.podrunner`; `hack/up` starts it in the background.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from devenv import images, paths, procs
from devenv import state as devstate

log = logging.getLogger("podrunner")
PODS_DIR = paths.RUN / "pods"
PROBE_INTERVAL = 0.5
MAX_BACKOFF = 10.0
MESSAGE_LIMIT = 4096
FAKE_NODE_PREFIX = "kwok-node-"


class ConfigError(Exception):
    """A referenced ConfigMap, Secret or key is missing (kubelet: CreateContainerConfigError)."""


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def endpoint(namespace: str, pod: str) -> dict[str, Any] | None:
    """Where a running pod of ours listens: {"port": N, "pid": N, "containerPort": N}."""
    f = PODS_DIR / f"{namespace}_{pod}.json"
    return json.loads(f.read_text()) if f.exists() else None


def _api() -> Any:
    from kubernetes import client, config

    st = devstate.load()
    return client.CoreV1Api(config.new_client_from_config(config_file=st.kubeconfig))


class PodWorker(threading.Thread):
    """Runs one pod's container until the pod is deleted or (Jobs) the process finished."""

    def __init__(self, pod: dict[str, Any], ip: str) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.pod = pod
        self.ns: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.ip = ip
        self.stopping = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = _api()
        spec = pod["spec"]
        self.container: dict[str, Any] = next(
            c for c in spec["containers"] if images.is_ours(c.get("image", "")))
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.grace = min(int(spec.get("terminationGracePeriodSeconds", 30)), 10)
        self.base = PODS_DIR / f"{self.ns}_{self.name}"
        self.run_spec = images.parse(self.container["image"], self.container.get("command"),
                                     self.container.get("args"))
        self.restarts = 0
        self.started_at = now()
        self.ready = False

    # -- status ---------------------------------------------------------------------------

    def _patch(self, status: dict[str, Any]) -> None:
        try:
            self.api.patch_namespaced_pod_status(self.name, self.ns, {"status": status})
        except Exception as exc:
            log.info("status of %s/%s not patched: %s", self.ns, self.name, exc)

    def _conditions(self, ready: bool) -> list[dict[str, Any]]:
        t = now()
        flag = "True" if ready else "False"
        return [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": self.started_at},
            {"type": "Initialized", "status": "True", "lastTransitionTime": self.started_at},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": t},
            {"type": "Ready", "status": flag, "lastTransitionTime": t},
        ]

    def _container_status(self, state: dict[str, Any], ready: bool,
                          last: dict[str, Any] | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.container["name"], "image": self.container["image"],
            "imageID": f"local://{self.container['image']}", "ready": ready,
            "restartCount": self.restarts, "started": "running" in state, "state": state,
        }
        if last:
            status["lastState"] = last
        return status

    def report(self, phase: str, state: dict[str, Any], ready: bool,
               last: dict[str, Any] | None = None) -> None:
        self.ready = ready
        self._patch({
            "phase": phase, "hostIP": "10.0.0.1", "podIP": self.ip,
            "podIPs": [{"ip": self.ip}], "startTime": self.started_at,
            "conditions": self._conditions(ready),
            "containerStatuses": [self._container_status(state, ready, last)],
        })

    # -- environment ----------------------------------------------------------------------

    def _config_value(self, kind: str, name: str, key: str, optional: bool) -> str | None:
        try:
            if kind == "configmap":
                obj = self.api.read_namespaced_config_map(name, self.ns)
                data = obj.data or {}
                value = data.get(key)
            else:
                obj = self.api.read_namespaced_secret(name, self.ns)
                raw = (obj.data or {}).get(key)
                value = base64.b64decode(raw).decode() if raw is not None else None
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                if optional:
                    return None
                raise ConfigError(f'{kind} "{name}" not found') from exc
            raise
        if value is None and not optional:
            raise ConfigError(f"couldn't find key {key} in {kind.title()} {self.ns}/{name}")
        return value

    def resolve_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in self.container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, ref_key in (("configmap", "configMapRef"), ("secret", "secretRef")):
                ref = source.get(ref_key)
                if not ref:
                    continue
                try:
                    if kind == "configmap":
                        items = self.api.read_namespaced_config_map(ref["name"], self.ns).data
                        env.update({prefix + k: v for k, v in (items or {}).items()})
                    else:
                        items = self.api.read_namespaced_secret(ref["name"], self.ns).data
                        env.update({prefix + k: base64.b64decode(v).decode()
                                    for k, v in (items or {}).items()})
                except Exception as exc:
                    if getattr(exc, "status", None) == 404 and not ref.get("optional"):
                        raise ConfigError(f'{kind} "{ref["name"]}" not found') from exc
                    if getattr(exc, "status", None) != 404:
                        raise
        for var in self.container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
                continue
            source = var.get("valueFrom") or {}
            value: str | None = None
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                value = self._config_value("configmap", ref["name"], ref["key"],
                                           bool(ref.get("optional")))
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = self._config_value("secret", ref["name"], ref["key"],
                                           bool(ref.get("optional")))
            elif "fieldRef" in source:
                field = source["fieldRef"]["fieldPath"]
                value = {"metadata.name": self.name, "metadata.namespace": self.ns,
                         "metadata.uid": self.uid, "status.podIP": self.ip,
                         "spec.nodeName": self.pod["spec"].get("nodeName", "")}.get(field)
            if value is not None:
                env[var["name"]] = value
        return env

    # -- probes ---------------------------------------------------------------------------

    def _port_for(self, port: Any, mapping: dict[int, int]) -> int:
        if isinstance(port, str) and not port.isdigit():
            for p in self.container.get("ports") or []:
                if p.get("name") == port:
                    port = p["containerPort"]
                    break
        number = int(port)
        return mapping.get(number, number)

    def probe_ok(self, mapping: dict[int, int], kind: str = "readinessProbe") -> bool:
        probe = self.container.get(kind)
        if not probe:
            return True
        if "httpGet" in probe:
            get = probe["httpGet"]
            url = f"http://127.0.0.1:{self._port_for(get['port'], mapping)}{get.get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    return bool(200 <= resp.status < 400)
            except Exception:
                return False
        if "tcpSocket" in probe:
            return procs.port_open(self._port_for(probe["tcpSocket"]["port"], mapping))
        return True  # exec probes cannot be run here; treated as passing

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s: runner failed", self.ns, self.name)
        finally:
            self._kill()

    def _kill(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _wait_for_config(self) -> dict[str, str]:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                return self.resolve_env()
            except ConfigError as exc:
                self.report("Pending", {"waiting": {"reason": "CreateContainerConfigError",
                                                    "message": str(exc)}}, False)
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)
        return {}

    def _run(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        last: dict[str, Any] | None = None
        backoff = 1.0
        while not self.stopping.is_set():
            env = self._wait_for_config()
            if self.stopping.is_set():
                return
            code, started, message = self._run_once(env)
            finished = now()
            terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                          "startedAt": started, "finishedAt": finished,
                          "containerID": f"local://{self.uid}"}
            if message:
                terminated["message"] = message
            if self.stopping.is_set():
                return
            job_like = self.restart_policy != "Always"
            if job_like and (code == 0 or self.restart_policy == "Never"):
                self.report("Succeeded" if code == 0 else "Failed", {"terminated": terminated},
                            False, last)
                return
            # Restart, as a kubelet does, with a (short) back-off.
            self.restarts += 1
            last = {"terminated": terminated}
            self.report("Running", {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {backoff:.0f}s restarting failed container "
                           f"{self.container['name']} ({code})"}}, False, last)
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _run_once(self, env: dict[str, str]) -> tuple[int, str, str]:
        """Start the process, report it, probe it, and wait for it to end."""
        term_file = self.base / f"termination-{self.restarts}"
        term_file.unlink(missing_ok=True)
        term_file.touch()
        full_env = {"PATH": f"{paths.VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
                    "HOME": str(self.base), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                    **env, "TERMINATION_MESSAGE_PATH": str(term_file),
                    "HOSTNAME": self.name}
        mapping: dict[int, int] = {}
        if "PORT" in env and env["PORT"].isdigit():
            host_port = procs.free_port()
            mapping[int(env["PORT"])] = host_port
            full_env["PORT"] = str(host_port)
        migrations = images.merged_migrations(self.run_spec, self.base / "migrations")
        if migrations is not None:
            full_env["MIGRATIONS_DIR"] = str(migrations)
        argv = images.resolve_argv(self.run_spec)
        logfile = open(PODS_DIR / f"{self.ns}_{self.name}.log", "ab")  # noqa: SIM115
        started = now()
        try:
            self.proc = subprocess.Popen(argv, env=full_env, cwd=self.base, stdout=logfile,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        except OSError as exc:
            logfile.close()
            return 128, started, f"failed to start {argv[0]}: {exc}"
        logfile.close()
        info = {"pid": self.proc.pid, "argv": argv, "image": self.container["image"]}
        if mapping:
            (container_port, host_port), = mapping.items()
            info.update(port=host_port, containerPort=container_port)
        (PODS_DIR / f"{self.ns}_{self.name}.json").write_text(json.dumps(info))
        self.report("Running", {"running": {"startedAt": started}}, False)
        liveness = Liveness(self.container.get("livenessProbe"), time.monotonic())
        while self.proc.poll() is None and not self.stopping.is_set():
            ok = self.probe_ok(mapping)
            if ok != self.ready:
                self.report("Running", {"running": {"startedAt": started}}, ok)
            if liveness.due(time.monotonic()) and liveness.failed(
                    self.probe_ok(mapping, "livenessProbe")):
                log.info("%s/%s: liveness probe failed, killing the container", self.ns,
                         self.name)
                self._kill()
                return 137, started, "liveness probe failed"
            self.stopping.wait(PROBE_INTERVAL)
        if self.stopping.is_set():
            return 137, started, ""
        code = self.proc.wait()
        return code, started, self._termination_message(term_file, code)

    def _termination_message(self, term_file: Path, code: int) -> str:
        message = term_file.read_text(errors="replace")[:MESSAGE_LIMIT] if term_file.exists() \
            else ""
        policy = self.container.get("terminationMessagePolicy", "File")
        if not message and code != 0 and policy == "FallbackToLogsOnError":
            logf = PODS_DIR / f"{self.ns}_{self.name}.log"
            if logf.exists():
                message = "\n".join(logf.read_text(errors="replace").splitlines()[-80:])
                message = message[-MESSAGE_LIMIT:]
        return message


class Liveness:
    """When to run a liveness probe and when it has failed for good. Unlike readiness
    (checked every half second), liveness honours initialDelaySeconds, periodSeconds and
    failureThreshold: compressing them would kill a process that is merely starting."""

    def __init__(self, probe: dict[str, Any] | None, started: float) -> None:
        self.enabled = bool(probe)
        probe = probe or {}
        self.period = float(probe.get("periodSeconds", 10))
        self.threshold = int(probe.get("failureThreshold", 3))
        self.next = started + float(probe.get("initialDelaySeconds", 0))
        self.failures = 0

    def due(self, now: float) -> bool:
        if not self.enabled or now < self.next:
            return False
        self.next = now + self.period
        return True

    def failed(self, ok: bool) -> bool:
        self.failures = 0 if ok else self.failures + 1
        return self.failures >= self.threshold


class Runner:
    """Watches pods and keeps one worker per pod of ours."""

    def __init__(self) -> None:
        self.api = _api()
        self.workers: dict[str, PodWorker] = {}
        self.next_ip = 2

    def _ip(self) -> str:
        ip = f"10.0.1.{self.next_ip}"
        self.next_ip = self.next_ip % 250 + 1
        return ip

    def handle(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        ours = any(images.is_ours(c.get("image", "")) for c in spec.get("containers", []))
        if not ours:
            return
        worker = self.workers.get(uid)
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            if worker is not None:
                worker.stop()
                self.workers.pop(uid, None)
            return
        phase = (pod.get("status") or {}).get("phase", "Pending")
        # Only pods on kwok's fake nodes: the real node's kubelet runs its own pods.
        on_fake_node = str(spec.get("nodeName") or "").startswith(FAKE_NODE_PREFIX)
        if worker is None and on_fake_node and phase in ("Pending", "Running"):
            worker = PodWorker(pod, self._ip())
            self.workers[uid] = worker
            log.info("starting %s/%s: %s", meta["namespace"], meta["name"],
                     " ".join(worker.run_spec.argv))
            worker.start()

    def loop(self) -> None:
        from kubernetes import watch

        PODS_DIR.mkdir(parents=True, exist_ok=True)
        api_client = self.api.api_client
        while True:
            pods = self.api.list_pod_for_all_namespaces()
            for item in pods.items:
                self.handle("ADDED", api_client.sanitize_for_serialization(item))
            w = watch.Watch()
            try:
                for event in w.stream(self.api.list_pod_for_all_namespaces,
                                      resource_version=pods.metadata.resource_version,
                                      timeout_seconds=300):
                    obj = api_client.sanitize_for_serialization(event["object"])
                    self.handle(event["type"], obj)
            except Exception as exc:
                log.info("watch restarted: %s", exc)
                time.sleep(0.2)


def main() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    runner = Runner()
    signal.signal(signal.SIGTERM, lambda *_: _shutdown(runner))
    runner.loop()


def _shutdown(runner: Runner) -> None:
    for worker in list(runner.workers.values()):
        worker.stop()
    for worker in list(runner.workers.values()):
        worker.join(timeout=12)
    raise SystemExit(0)


if __name__ == "__main__":
    main()
