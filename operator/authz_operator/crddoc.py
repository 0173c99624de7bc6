"""The field reference of docs/usage.md, generated from the CRD's schema. Pure (but `main`).

The CRD (`crds/authorizationservices.rwadurian.io.yaml`) is the one source of truth for every
field's type, default, constraints and description; this module renders its `spec` as a
Markdown table and splices it between two marker comments of a document, leaving the
hand-written prose around it alone. A unit test fails when docs/usage.md is stale.

    python -m authz_operator.crddoc                       # print the reference
    python -m authz_operator.crddoc --write docs/usage.md # regenerate it in place
    python -m authz_operator.crddoc --check docs/usage.md # exit 1 when stale

It lives in the operator package (not in hack/, the local environment's code) because it
documents the operator's API and needs nothing but the CRD file and PyYAML.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CRD_PATH = Path("crds/authorizationservices.rwadurian.io.yaml")
BEGIN = "<!-- BEGIN field reference: generated from the CRD by " \
        "`python -m authz_operator.crddoc --write docs/usage.md`; do not edit -->"
END = "<!-- END field reference -->"


@dataclass(frozen=True)
class Field:
    path: str
    type: str
    required: bool
    default: str
    constraints: tuple[str, ...]
    description: str


class StaleError(Exception):
    """The markers are missing or unbalanced."""


def _type(schema: Mapping[str, Any]) -> str:
    kind = str(schema.get("type") or ("object" if "properties" in schema else "any"))
    if kind == "array":
        return f"[]{_type(schema.get('items') or {})}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        return f"map[string]{_type(schema['additionalProperties'])}"
    return kind


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "), sort_keys=True)


def _range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"{low}..{high}"
    return f">= {low}" if low is not None else f"<= {high}"


def constraints(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """What the API server checks on this field alone, in a fixed order."""
    out: list[str] = []
    if "enum" in schema:
        out.append("one of " + ", ".join(f"`{_value(v)}`" for v in schema["enum"]))
    if "minimum" in schema or "maximum" in schema:
        out.append(_range(schema.get("minimum"), schema.get("maximum")))
    if "minLength" in schema or "maxLength" in schema:
        out.append("length " + _range(schema.get("minLength"), schema.get("maxLength")))
    if "minItems" in schema or "maxItems" in schema:
        out.append("items " + _range(schema.get("minItems"), schema.get("maxItems")))
    if "pattern" in schema:
        out.append(f"pattern `{schema['pattern']}`")
    if "format" in schema:
        out.append(f"format {schema['format']}")
    rules = schema.get("x-kubernetes-validations") or ()
    out.extend(f"rule: {_prose(str(r['message']))}" for r in rules if r.get("message"))
    return tuple(out)


def fields(schema: Mapping[str, Any], prefix: str = "spec",
           required: bool = False) -> Iterator[Field]:
    """Every field under `schema` (depth first, in the schema's order), itself first."""
    yield Field(
        path=prefix, type=_type(schema), required=required,
        default=(_value(schema["default"]) or '""') if "default" in schema else "",
        constraints=constraints(schema),
        description=_prose(" ".join(str(schema.get("description") or "").split())))
    needed = set(schema.get("required") or ())
    for name, sub in (schema.get("properties") or {}).items():
        yield from fields(sub, f"{prefix}.{name}", name in needed)
    items = schema.get("items")
    if isinstance(items, Mapping) and (items.get("properties") or constraints(items)):
        yield from fields(items, f"{prefix}[]", False)


def spec_schema(crd: Mapping[str, Any], version: str | None = None) -> Mapping[str, Any]:
    """The `spec` schema of the stored version (or of `version`)."""
    versions: Sequence[Mapping[str, Any]] = crd["spec"]["versions"]
    chosen = next(v for v in versions if (v["name"] == version if version else v["storage"]))
    spec: Mapping[str, Any] = chosen["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _prose(text: str) -> str:
    """Text outside code spans: `<name>` would be read as an HTML tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(crd: Mapping[str, Any]) -> str:
    """The reference as Markdown: one row per field of `spec`."""
    version = next(v["name"] for v in crd["spec"]["versions"] if v["storage"])
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    lines = [
        f"Every field of `{kind}` `{group}/{version}` `spec`, from the CRD's schema. "
        "Fields in **bold** are required (when their parent is given); the API server fills "
        "in the defaults and refuses a value that breaks a constraint, naming the field.",
        "",
        "| field | type | default | constraints | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in list(fields(spec_schema(crd)))[1:]:   # the `spec` object itself is not a field
        path = f"**`{f.path}`**" if f.required else f"`{f.path}`"
        default = f"`{_cell(f.default)}`" if f.default else ""
        lines.append(" | ".join([
            f"| {path}", f.type, default, "; ".join(_cell(c) for c in f.constraints),
            _cell(f.description)]) + " |")
    root = next(v for v in crd["spec"]["versions"] if v["storage"])["schema"]["openAPIV3Schema"]
    rules = constraints({"x-kubernetes-validations": [
        *(root.get("x-kubernetes-validations") or []),
        *(spec_schema(crd).get("x-kubernetes-validations") or [])]})
    if rules:
        lines += ["", "Rules across fields (CEL, checked at apply time):", ""]
        lines += [f"- {r.removeprefix('rule: ')}" for r in rules]
    return "\n".join(lines) + "\n"


def splice(document: str, generated: str) -> str:
    """`document` with the text between the markers replaced by `generated`."""
    if document.count(BEGIN) != 1 or document.count(END) != 1:
        raise StaleError(f"the document needs exactly one {BEGIN!r} and one {END!r}")
    head, rest = document.split(BEGIN)
    _, tail = rest.split(END)
    if not head.endswith("\n") or not tail.startswith("\n"):
        raise StaleError("the markers must be on lines of their own")
    return f"{head}{BEGIN}\n{generated}{END}{tail}"


def load(path: Path = CRD_PATH) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    return crd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m authz_operator.crddoc",
                                     description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--crd", type=Path, default=CRD_PATH)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="DOC", help="splice into DOC in place")
    group.add_argument("--check", type=Path, metavar="DOC", help="exit 1 if DOC is stale")
    args = parser.parse_args(argv)
    generated = render(load(args.crd))
    target: Path | None = args.write or args.check
    if target is None:
        sys.stdout.write(generated)
        return 0
    text = target.read_text()
    updated = splice(text, generated)
    if args.check:
        if updated != text:
            print(f"{target} is stale: run python -m authz_operator.crddoc --write {target}",
                  file=sys.stderr)
            return 1
        return 0
    if updated != text:
        target.write_text(updated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
