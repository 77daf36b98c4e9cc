"""The service's request and response shapes, the request record generated from the data contract.

`ForestRecord` is built with `create_model` from `contract.NUMERIC_FEATURES` and
`contract.CATEGORICAL_FEATURES`, so bounds, names, aliases and categories can never drift from
what ingestion validates. Numbers are JSON integers in JSON Schema's sense: `2900` and `2900.0`
are accepted, while `2900.5`, `"2900"`, `true` and `null` are rejected (a JSON client can always
send a number; a CSV upload parses text instead). Categories
accept the contract's canonical codes and aliases, case-insensitively, and validate to their
ordinal code, which is what the model consumes.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    create_model,
)
from pydantic_core import PydanticCustomError

from forestops import contract
from forestops.modeling.package import input_example


def _category_field(feature: str, course_name: str) -> tuple[Any, Any]:
    categories = contract.CATEGORICAL_FEATURES[feature]
    spellings: list[JsonValue] = [spelling for c in categories for spelling in (c.code, *c.aliases)]
    return (
        Annotated[
            str, Field(strict=True), AfterValidator(partial(contract.category_code, feature))
        ],
        Field(
            validation_alias=AliasChoices(feature, course_name),
            description=(
                f"One of the contract's {feature} codes or aliases (case-insensitive): "
                + ", ".join(c.code for c in categories)
            ),
            examples=[categories[0].code],
            json_schema_extra={"enum": spellings},
        ),
    )


def _json_number(value: object) -> object:
    """Lax int parsing minus its text and boolean coercions: numbers only."""
    if isinstance(value, str | bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


_Integer = Annotated[int, BeforeValidator(_json_number)]


def _numeric_field(spec: contract.NumericFeature) -> tuple[Any, Any]:
    return (
        _Integer,
        Field(
            ge=spec.minimum,
            le=spec.maximum,
            validation_alias=AliasChoices(spec.name, spec.course_name),
            description=f"{contract.FEATURE_DESCRIPTIONS[spec.name].en} ({spec.unit})",
            examples=[spec.default],
        ),
    )


_FIELDS: dict[str, Any] = {
    **{spec.name: _numeric_field(spec) for spec in contract.NUMERIC_FEATURES},
    "wilderness_area": _category_field("wilderness_area", "Wilderness_Area"),
    "soil_type": _category_field("soil_type", "Soil_Type"),
}
ForestRecord: type[BaseModel] = create_model(
    "ForestRecord",
    __config__=ConfigDict(extra="forbid", title="ForestRecord"),
    __doc__=(
        "One site to classify. Canonical snake_case names or the course's CamelCase names "
        "(Elevation, Wilderness_Area, ...); every feature is required, nothing else is allowed."
    ),
    **_FIELDS,
)


class ErrorDetail(BaseModel):
    detail: str


_CONTRIBUTION_FIELDS: dict[str, Any] = {name: (float, ...) for name in contract.FEATURE_NAMES}
Contributions: type[BaseModel] = create_model(
    "Contributions",
    __config__=ConfigDict(extra="forbid", title="Contributions"),
    __doc__="Each contract feature's contribution to the class's raw score (softmax logit): "
    "positive pushes towards the class, negative away from it.",
    **_CONTRIBUTION_FIELDS,
)


class ClassExplanation(BaseModel):
    cover_type: int = Field(ge=0, le=6, description="The class explained")
    cover_type_name: str
    base_value: float = Field(description="The model's expected raw score for this class")
    raw_score: float = Field(
        description="The model's raw score for this class on this record: base_value plus the "
        "sum of the contributions (within 1e-6)"
    )
    contributions: Contributions  # type: ignore[valid-type]


class Prediction(BaseModel):
    cover_type: int = Field(ge=0, le=6, description="Predicted class id (course numbering 0..6)")
    cover_type_name: str
    probabilities: list[float] = Field(
        min_length=7, max_length=7, description="Class probabilities, indexed by class id"
    )
    explanation: ClassExplanation | None = Field(
        None, description="With ?explain=true or all: why the predicted class"
    )
    explanations: list[ClassExplanation] | None = Field(
        None, description="With ?explain=all: every class the model knows, by class id"
    )


class PredictResponse(BaseModel):
    model_name: str
    model_version: str | None = Field(description="Registered version; null when serving a run")
    predictions: list[Prediction]


HealthStatus = Literal["ok", "degraded", "unavailable"]


class HealthResponse(BaseModel):
    status: HealthStatus
    model_loaded: bool
    model_version: str | None
    model_uri: str | None
    detail: str | None = Field(description="Why the status is not ok (null when it is)")


class CategoryInfo(BaseModel):
    code: str
    label: str


class FeatureInfo(BaseModel):
    name: str
    type: Literal["integer", "category"]
    minimum: int | None
    maximum: int | None
    unit: str | None
    description: str
    default: int | str
    categories: list[CategoryInfo] | None
    course_name: str


class ClassInfo(BaseModel):
    id: int
    name: str


class MetadataResponse(BaseModel):
    model_name: str
    model_version: str | None
    alias: str | None
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    params: dict[str, str]
    trained_at: str | None = Field(description="ISO 8601, UTC")
    lineage: dict[str, str] = Field(
        description="Training-data and code lineage from the run's forestops.* and source tags"
    )
    features: list[FeatureInfo]
    classes: list[ClassInfo]
    runtime: Literal["pyfunc", "lightgbm", "compiled", "forest"] = Field(
        description="What computes the answers: the pyfunc model, its LightGBM booster, the "
        "booster compiled to native code (after it gave the booster's answers), or a "
        "scikit-learn forest's trees asked directly (predict_proba's answers, without its "
        "per-tree overhead)"
    )
    runtime_note: str | None = Field(
        description="Why a LightGBM model is not served compiled (null otherwise)"
    )
    explanations: Literal["none", "lightgbm", "compiled"] = Field(
        description="What answers `?explain=`: nothing (the model has no exact contributions, "
        "or a forest's kernel failed when first built), "
        "LightGBM's pred_contrib (until the first explanation has had the compiled TreeSHAP "
        "kernel built, or where it cannot be), or that kernel (the same numbers, faster)"
    )
    refused: str | None = Field(
        description="Why the registry's current choice is not the model served (it failed its "
        "integrity check or smoke test; null otherwise)"
    )


class ReloadResponse(BaseModel):
    reloaded: bool
    model_version: str | None = Field(description="The version served after this call")
    detail: str


def feature_schema() -> list[FeatureInfo]:
    """The contract as the UI needs it to build a form (bounds, units, categories, defaults)."""
    numeric = [
        FeatureInfo(
            name=f.name,
            type="integer",
            minimum=f.minimum,
            maximum=f.maximum,
            unit=f.unit,
            description=contract.FEATURE_DESCRIPTIONS[f.name].en,
            default=f.default,
            categories=None,
            course_name=f.course_name,
        )
        for f in contract.NUMERIC_FEATURES
    ]
    course = {canonical: course for course, canonical in contract.COURSE_NAMES.items()}
    example = input_example().iloc[0]
    categorical = [
        FeatureInfo(
            name=name,
            type="category",
            minimum=None,
            maximum=None,
            unit=None,
            description=contract.FEATURE_DESCRIPTIONS[name].en,
            default=str(example[name]),
            categories=[CategoryInfo(code=c.code, label=c.label) for c in categories],
            course_name=course[name],
        )
        for name, categories in contract.CATEGORICAL_FEATURES.items()
    ]
    return numeric + categorical


def class_schema() -> list[ClassInfo]:
    return [ClassInfo(id=c.id, name=c.name) for c in contract.COVER_TYPES]
