"""The field reference generated from the CRD: the renderer on small schemas, the splice, the
command, and docs/usage.md being up to date with crds/ (the test that fails when it drifts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from authz_operator import crddoc
from authz_operator.crddoc import BEGIN, END, Field

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "crds" / "authorizationservices.rwadurian.io.yaml"
USAGE = ROOT / "docs" / "usage.md"

SECRET_REF = {"type": "object", "required": ["name", "key"], "description": "A key.",
              "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 253},
                             "key": {"type": "string", "pattern": "^[a|b]+$"}}}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "description": "The  image,\n  tagged."},
        "port": {"type": "integer", "default": 3002, "minimum": 1, "maximum": 65535},
        "level": {"type": "string", "default": "info", "enum": ["debug", "info"]},
        "ref": SECRET_REF,
        "brokers": {"type": "array", "minItems": 1,
                    "items": {"type": "string", "pattern": "^[a-z]+:[0-9]+$"}},
        "tags": {"type": "array", "items": {"type": "string"}, "default": ["x"]},
        "annotations": {"type": "object", "default": {"a": "/"},
                        "additionalProperties": {"type": "string"}},
        "empty": {"type": "string", "default": ""},
        "limits": {"type": "object", "default": {}, "x-kubernetes-validations": [
            {"rule": "self.a < self.b", "message": "a must be below <b>"}]},
    },
}


def crd(spec: dict[str, Any], root_rules: list[dict[str, str]] | None = None) -> dict[str, Any]:
    root: dict[str, Any] = {"type": "object", "properties": {"spec": spec}}
    if root_rules:
        root["x-kubernetes-validations"] = root_rules
    return {"spec": {"group": "example.io", "names": {"kind": "Thing"}, "versions": [
        {"name": "v1beta1", "storage": False, "schema": {"openAPIV3Schema": {}}},
        {"name": "v1", "storage": True, "schema": {"openAPIV3Schema": root}}]}}


def test_fields_walk_the_schema_in_order_with_types_defaults_and_constraints() -> None:
    got = {f.path: f for f in crddoc.fields(SCHEMA)}
    assert list(got) == [
        "spec", "spec.image", "spec.port", "spec.level", "spec.ref", "spec.ref.name",
        "spec.ref.key", "spec.brokers", "spec.brokers[]", "spec.tags", "spec.annotations",
        "spec.empty", "spec.limits"]
    assert got["spec.image"] == Field("spec.image", "string", True, "", (), "The image, tagged.")
    assert got["spec.port"] == Field("spec.port", "integer", False, "3002", ("1..65535",), "")
    assert got["spec.level"].constraints == ("one of `debug`, `info`",)
    assert got["spec.ref.name"].required
    assert got["spec.ref.key"].required
    assert not got["spec.ref"].required
    assert got["spec.ref.name"].constraints == ("length 1..253",)
    assert got["spec.brokers"].type == "[]string"
    assert got["spec.brokers"].constraints == ("items >= 1",)
    assert got["spec.brokers[]"].constraints == ("pattern `^[a-z]+:[0-9]+$`",)
    assert got["spec.tags"].default == '["x"]'             # plain items: no row of their own
    assert got["spec.annotations"].type == "map[string]string"
    assert got["spec.annotations"].default == '{"a": "/"}'
    assert got["spec.empty"].default == '""'
    assert got["spec.limits"].constraints == ("rule: a must be below &lt;b&gt;",)


def test_render_a_table_row_per_field_pipes_escaped_and_rules_listed() -> None:
    text = crddoc.render(crd(SCHEMA, [{"rule": "size(self.metadata.name) < 9",
                                       "message": "metadata.name is short"}]))
    assert "`Thing` `example.io/v1` `spec`" in text        # the stored version
    rows = [line for line in text.splitlines() if line.startswith(("| `", "| **"))]
    assert len(rows) == len(list(crddoc.fields(SCHEMA))) - 1
    assert "| **`spec.image`** | string |  |  | The image, tagged. |" in rows
    assert "| `spec.port` | integer | `3002` | 1..65535 |  |" in rows
    assert r"pattern `^[a\|b]+$`" in text
    for row in rows:   # every row has exactly five cells once escaped pipes are set aside
        assert row.replace(r"\|", "").count("|") == 6, row
    assert text.endswith("- metadata.name is short\n")


def test_splice_replaces_only_between_the_markers() -> None:
    doc = f"# Title\n\nprose before\n\n{BEGIN}\nold table\n{END}\n\nprose after\n"
    new = crddoc.splice(doc, "new table\n")
    assert new == f"# Title\n\nprose before\n\n{BEGIN}\nnew table\n{END}\n\nprose after\n"
    assert crddoc.splice(new, "new table\n") == new
    with pytest.raises(crddoc.StaleError):
        crddoc.splice("no markers\n", "x\n")
    with pytest.raises(crddoc.StaleError):
        crddoc.splice(f"{BEGIN}\n{END}\n{END}\n", "x\n")
    with pytest.raises(crddoc.StaleError):
        crddoc.splice(f"text {BEGIN}\n{END}\n", "x\n")


def test_check_fails_on_a_stale_document_and_write_fixes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "usage.md"
    doc.write_text(f"prose\n\n{BEGIN}\n| `spec.gone` | string |  |  |  |\n{END}\n")
    assert crddoc.main(["--crd", str(CRD), "--check", str(doc)]) == 1
    assert "is stale" in capsys.readouterr().err
    assert crddoc.main(["--crd", str(CRD), "--write", str(doc)]) == 0
    assert crddoc.main(["--crd", str(CRD), "--check", str(doc)]) == 0
    assert doc.read_text().startswith("prose\n\n")
    assert crddoc.main(["--crd", str(CRD)]) == 0
    assert "| **`spec.image`** | string |" in capsys.readouterr().out


def test_docs_usage_md_has_the_current_field_reference() -> None:
    """Fails when the CRD changed and docs/usage.md was not regenerated."""
    text = USAGE.read_text()
    generated = crddoc.render(crddoc.load(CRD))
    assert crddoc.splice(text, generated) == text, (
        "docs/usage.md is stale: run .venv/bin/python -m authz_operator.crddoc "
        "--write docs/usage.md")


def test_every_spec_field_of_the_crd_is_in_the_reference() -> None:
    schema = crddoc.spec_schema(crddoc.load(CRD))
    text = USAGE.read_text()
    reference = text[text.index(BEGIN):text.index(END)]
    paths = [f.path for f in crddoc.fields(schema)][1:]
    assert len(paths) > 50
    for path in paths:
        assert f"`{path}`" in reference, path
    assert "pattern `" in reference
    assert "one of `" in reference
    assert "rule: " in reference
