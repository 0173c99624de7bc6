"""Request validation against the OpenAPI 3.1 document (JSON Schema 2020-12, `jsonschema`).

The same document is served at `/openapi.json`, so what clients read is what is enforced.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import (
    ValidationError,
    best_match,
)
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from authz_service.errors import InvalidInput

DOC_URI = "urn:authz-service:openapi"
# Valid parameter values remembered per parameter (a check's user, role and region repeat
# across requests; a JSON Schema walk per value cost more than the rest of the check).
VALID_MEMO = 8192


@functools.lru_cache(maxsize=256)
def ecma_pattern(pattern: str) -> re.Pattern[str]:
    """`pattern` as ECMA-262 reads it: there `$` ends the string, while Python's `$` also
    matches before a final newline, which would let "440106\\n" through "^[0-9]{6}$"."""
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def _pattern(validator: Validator, pattern: str, instance: Any, schema: Mapping[str, Any]
             ) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


SchemaValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"pattern": _pattern})


def load_document() -> dict[str, Any]:
    text = resources.files("authz_service").joinpath("openapi.yaml").read_text("utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


@dataclass(frozen=True)
class Param:
    name: str
    location: str
    required: bool
    schema: Mapping[str, Any]


class Operation:
    """The validators for one operationId: its parameters and its JSON body."""

    def __init__(self, doc: Mapping[str, Any], registry: Registry[Any], path: str,
                 method: str) -> None:
        item = doc["paths"][path]
        spec = item[method]
        self.params = [
            Param(p["name"], p["in"], bool(p.get("required")), p.get("schema", {}))
            for p in [*item.get("parameters", []), *spec.get("parameters", [])]
        ]
        self._registry = registry
        self._param_validators = {p.name: self._validator(p.schema) for p in self.params}
        # Resolved once here: per request, a $ref lookup cost more than the validation.
        self._param_types = {p.name: self._param_type(p) for p in self.params}
        self._valid: dict[str, set[Any]] = {p.name: set() for p in self.params}
        body = spec.get("requestBody")
        self.body_required = bool(body and body.get("required"))
        self._body = (
            self._validator(body["content"]["application/json"]["schema"]) if body else None
        )

    def _validator(self, schema: Mapping[str, Any]) -> Validator:
        resolved = self._resolve(schema)
        validator: Validator = SchemaValidator(resolved, registry=self._registry)
        return validator

    def _resolve(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            return {"$ref": DOC_URI + ref}
        return dict(schema)

    def _param_type(self, param: Param) -> Any:
        schema: Mapping[str, Any] = param.schema
        ref = schema.get("$ref")
        if isinstance(ref, str):
            resolved = self._registry.resolver(DOC_URI).lookup(DOC_URI + ref).contents
            schema = resolved
        return schema.get("type"), schema.get("default")

    def parameters(self, location: str, values: Mapping[str, str]) -> dict[str, Any]:
        """Coerce and validate query or path parameters; 400 names the parameter."""
        result: dict[str, Any] = {}
        for param in self.params:
            if param.location != location:
                continue
            kind, default = self._param_types[param.name]
            raw = values.get(param.name)
            if raw is None or (raw == "" and param.required):
                if param.required:
                    raise InvalidInput(f"{param.name} is required", field=param.name)
                if default is not None:
                    result[param.name] = default
                continue
            # An empty optional value (`?status=`) is a value, checked like any other: only
            # an absent parameter means "no filter", as the document says.
            value: Any = raw
            if kind == "integer":
                try:
                    value = int(raw)
                except ValueError:
                    raise InvalidInput(f"{param.name} must be an integer",
                                       field=param.name) from None
            valid = self._valid[param.name]
            if value not in valid:
                self._check(param.name, value)
                if len(valid) >= VALID_MEMO:
                    valid.clear()
                valid.add(value)
            result[param.name] = value
        return result

    def _check(self, name: str, value: Any) -> None:
        validator = self._param_validators[name]
        # is_valid is the fast path; best_match only runs to explain a failure.
        if not validator.is_valid(value):
            error = best_match(validator.iter_errors(value))
            if error is not None:
                raise InvalidInput(f"{name}: {_describe(error)}", field=name)

    def body(self, payload: Any) -> Any:
        if self._body is None or self._body.is_valid(payload):
            return payload
        error = best_match(self._body.iter_errors(payload))
        if error is not None:
            where = _field(error)
            prefix = f"{where}: " if where else ""
            raise InvalidInput(f"{prefix}{_describe(error)}", field=where)
        return payload


def _field(error: ValidationError) -> str | None:
    path = [str(p) for p in error.absolute_path]
    # The stubs type these as "maybe unset"; a raised error always has them set.
    value: Any = error.validator_value
    schema: Any = error.schema
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in value if p not in error.instance]
        if missing:
            path.append(str(missing[0]))
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            path.append(str(extra[0]))
    return ".".join(path) or None


def _describe(error: ValidationError) -> str:
    value: Any = error.validator_value
    if error.validator == "enum":
        return "must be one of " + ", ".join(map(str, value))
    if error.validator == "pattern":
        # A pattern that carries a rule (the region a role needs) says it in `description`.
        schema: Any = error.schema
        described = schema.get("description") if isinstance(schema, dict) else None
        return f"has an invalid format: {described.strip()}" if described else (
            "has an invalid format")
    if error.validator == "required":
        return "is required"
    if error.validator == "additionalProperties":
        return "is not an allowed property"
    if error.validator == "type":
        return f"must be of type {error.validator_value}"
    message = str(error.message)
    return message if len(message) <= 200 else message[:200] + "..."


class OpenApi:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.document = doc
        registry: Registry[Any] = Registry().with_resource(
            DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
        )
        self.operations: dict[str, Operation] = {}
        for path, item in doc["paths"].items():
            for method, spec in item.items():
                if isinstance(spec, dict) and "operationId" in spec:
                    self.operations[spec["operationId"]] = Operation(doc, registry, path, method)

    def __getitem__(self, operation_id: str) -> Operation:
        return self.operations[operation_id]
