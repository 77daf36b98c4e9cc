"""`/metadata`: the served model (version, training metrics, lineage) and the contract.

`mlflow.source.name` (the training host's script path) is left out and the lineage tags' URIs
are redacted: a client key is enough to read this.
"""

from __future__ import annotations

import math

from fastapi import APIRouter

from forestops.redact import redact_text
from forestops.serving.dependencies import ServiceDep, served_model
from forestops.serving.routes.responses import error_responses
from forestops.serving.schemas import MetadataResponse, class_schema, feature_schema
from forestops.serving.served_model import trained_at_iso

_LINEAGE_PREFIXES = ("forestops.", "mlflow.source.")
_PRIVATE_TAGS = frozenset({"mlflow.source.name"})  # the training host's script path
_FEATURES = feature_schema()
_CLASSES = class_schema()

router = APIRouter()


@router.get(
    "/metadata",
    response_model=MetadataResponse,
    responses=error_responses(401, 503),
    summary="The served model: version, training metrics, lineage, feature schema, classes",
)
async def metadata(service: ServiceDep) -> MetadataResponse:
    holder = service.holder
    served = served_model(holder)
    ref = served.ref
    return MetadataResponse(
        model_name=served.model_name,
        model_version=ref.version,
        alias=ref.alias,
        run_id=ref.run_id,
        model_uri=ref.uri,
        metrics={k: v for k, v in ref.metrics.items() if math.isfinite(v)},
        params=ref.params,
        trained_at=trained_at_iso(ref),
        lineage={
            k: redact_text(v)
            for k, v in ref.tags.items()
            if k.startswith(_LINEAGE_PREFIXES) and k not in _PRIVATE_TAGS
        },
        features=_FEATURES,
        classes=_CLASSES,
        runtime=served.runtime,
        runtime_note=served.runtime_note,
        explanations="none" if served.explainer is None else served.explainer.method,
        refused=redact_text(holder.refusal) if holder.refusal else None,
    )
