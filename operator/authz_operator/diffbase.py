"""kopf's record of the last-handled configuration, built without copying the status.

kopf decides whether an AuthorizationService's spec changed (create, update, resume) by
comparing the resource's "essence" with the copy in its annotation. Its
`DiffBaseStorage.build` deep-copies the whole body first and then drops `metadata` and
`status`; it does so for every watch event of every resource, and our status patches are
most of those events. At 1,000 resources that copy was a tenth of the operator's CPU time
(py-spy, issue 11): the status, with its revision history, and the managedFields are
copied only to be thrown away.

`LeanDiffBaseStorage` hands kopf's own `build` a body without them: the same top-level
fields, and of the metadata only what the essence keeps or what kopf reads while building it
(labels, annotations, ownerReferences). The essence is therefore kopf's, field for field
(tests/unit/operator/test_diffbase.py compares the two); when a handler asks for extra
fields (which may be in the status), kopf gets the whole body as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

# What DiffBaseStorage.build reads of the metadata: labels and annotations go into the
# essence; ownerReferences (with the kind) names kopf's annotation keys
# (CollisionEvadingConvention.mark_key).
METADATA_READ = ("labels", "annotations", "ownerReferences")


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def build(self, *, body: kopf.Body,
              extra_fields: Iterable[kopf.FieldSpec] | None = None) -> kopf.BodyEssence:
        fields = list(extra_fields or [])
        if fields:
            return super().build(body=body, extra_fields=fields)
        meta = body.get("metadata") or {}
        lean: dict[str, Any] = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        lean["metadata"] = {k: meta[k] for k in METADATA_READ if k in meta}
        return super().build(body=kopf.Body(cast(kopf.RawBody, lean)), extra_fields=fields)
