"""The control plane's pure parts: the audit policy, the controllers' limits, and the kwok
stage that ends a migration Job's pod the way the real migrate command does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from authz_operator import resources
from authz_service.migrate import discover, latest
from devenv import cluster

# kwok v0.8.0's kustomize/stage/pod/fast/pod-complete.yaml, as far as the stages read it.
POD_COMPLETE: dict[str, Any] = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage",
    "metadata": {"name": "pod-complete"},
    "spec": {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {"matchExpressions": [
            {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
            {"key": ".status.phase", "operator": "In", "values": ["Running"]},
            {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
        ]},
        "next": {"statusTemplate": "phase: Succeeded\n"},
    },
}


def test_the_stage_names_what_the_builders_make() -> None:
    assert cluster.MIGRATE_CONTAINER == resources.MIGRATE_CONTAINER
    assert cluster.MIGRATION_LABEL == resources.LABEL_MIGRATION


def test_the_message_is_what_migrate_up_writes_on_an_empty_database() -> None:
    """`authz-service migrate up` prints and writes json.dumps({schemaVersion, applied})
    (service/authz_service/cli.py); on an empty database it applies every migration."""
    migrations = discover(cluster.MIGRATIONS)
    assert cluster.migrate_up_message() == json.dumps({
        "schemaVersion": latest(migrations), "applied": [m.version for m in migrations]})
    assert json.loads(cluster.migrate_up_message())["schemaVersion"] == "0003"


def test_a_folder_without_migrations_is_schema_0000(tmp_path: Path) -> None:
    assert cluster.migrate_up_message(tmp_path) == '{"schemaVersion": "0000", "applied": []}'


def test_up_migration_pods_get_the_message_and_no_other_pod_is_matched_twice() -> None:
    message = cluster.migrate_up_message()
    ours = cluster.migrate_up_stage(POD_COMPLETE, message)
    others = cluster.other_jobs_complete_stage(POD_COMPLETE)
    label = '.metadata.labels["rwadurian.io/migration"]'
    upstream = POD_COMPLETE["spec"]["selector"]["matchExpressions"]
    assert ours["spec"]["selector"]["matchExpressions"] == [
        *upstream, {"key": label, "operator": "In", "values": ["up"]}]
    assert others["spec"]["selector"]["matchExpressions"] == [
        *upstream, {"key": label, "operator": "NotIn", "values": ["up"]}]
    assert others["spec"]["next"] == POD_COMPLETE["spec"]["next"]
    assert POD_COMPLETE["spec"]["selector"]["matchExpressions"] == upstream   # not mutated
    template = ours["spec"]["next"]["statusTemplate"]
    assert ('{{ if eq $item.name "migrate" }}message: {{ `' + message + '` | Quote }}'
            '{{ end }}') in template
    assert "reason: Completed" in template
    assert "exitCode: 0" in template
    assert template.rstrip().endswith("phase: Succeeded")
    written = cluster.stage_yaml(ours)
    assert yaml.safe_load(written) == ours
    assert "statusTemplate: |" in written


def test_the_audit_policy_records_service_accounts_and_writes_without_bodies(
        tmp_path: Path) -> None:
    policy = cluster.audit_policy()
    rules = policy["rules"]
    assert policy["omitStages"] == ["RequestReceived"]
    assert rules[0] == {"level": "Metadata", "userGroups": ["system:serviceaccounts"]}
    assert {r["level"] for r in rules} == {"Metadata", "None"}      # never a body
    reads = next(r for r in rules if r.get("verbs"))
    assert (reads["level"], reads["verbs"]) == ("None", ["get", "list", "watch"])
    assert rules[-1] == {"level": "Metadata"}                          # every other write
    args = cluster.audit_args(tmp_path)
    assert f"--audit-policy-file={tmp_path / 'audit-policy.yaml'}" in args
    assert f"--audit-log-path={tmp_path / 'audit' / 'audit.log'}" in args
    assert "--audit-log-maxsize=100" in args
    assert "--audit-log-maxbackup=5" in args
    assert yaml.safe_load((tmp_path / "audit-policy.yaml").read_text()) == policy
    assert (tmp_path / "audit").is_dir()


def test_the_controllers_may_send_more_than_their_defaults() -> None:
    assert cluster.CONTROLLER_QPS > 50
    assert cluster.CONTROLLER_BURST >= cluster.CONTROLLER_QPS
