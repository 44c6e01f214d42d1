"""The artifact kinds and their file schemas.

Every artifact file is YAML with one ``<kind>_id`` field ending in ``-vN``; that field
tells the kind. Fields listed in a kind's ``file_fields`` are paths relative to the YAML
file; their bytes go to the blob store and their sha256 becomes part of the version's
identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from lockgate._conditions import parse_condition
from lockgate.registry._prompt import PromptSpec, StrictModel

FeatureType = Literal["float", "int", "bool", "str", "category", "datetime"]


class Feature(StrictModel):
    """A feature column: its type and, for categories, the allowed values."""

    type: FeatureType
    values: list[str | int] | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _values_only_for_categories(self) -> Feature:
        if self.values is not None and self.type != "category":
            raise ValueError("'values' is only allowed when type is 'category'")
        if self.values is not None and len(set(map(str, self.values))) != len(self.values):
            raise ValueError("'values' lists the same value twice")
        return self


class ModelSpec(StrictModel):
    """A classical model binary plus what is needed to serve and evaluate it."""

    model_id: str
    flavor: Literal["sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "custom"]
    format: Literal["skops", "onnx", "joblib", "pickle"]
    file: str = Field(min_length=1)
    task: Literal["classification", "regression"]
    label: str | None = None
    features: dict[str, FeatureType | Feature] = Field(min_length=1)
    training_data_hash: str | None = Field(default=None, pattern=r"^(sha256:)?[0-9a-f]{64}$")
    metrics: dict[str, float] = Field(default_factory=dict)
    trusted: bool = Field(
        default=False,
        description="Trust the binary: required to load joblib/pickle (which can run code), "
        "and lets a skops file use types outside lockgate's allow-list. The blob's sha256 "
        "is verified on every load either way.",
    )
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _label_is_not_a_feature(self) -> ModelSpec:
        if self.label is not None and self.label in self.features:
            raise ValueError(f"the label '{self.label}' is also listed as a feature")
        return self


class Chunking(StrictModel):
    strategy: Literal["fixed", "sentence", "recursive", "markdown"] = "recursive"
    size: int = Field(default=512, ge=16)
    overlap: int = Field(default=64, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Chunking:
        if self.overlap >= self.size:
            raise ValueError("'overlap' must be smaller than 'size'")
        return self


class RagSpec(StrictModel):
    """A retrieval configuration: index, embedding model, chunking, top_k."""

    rag_id: str
    index: str = Field(min_length=1)
    embedding_model: str | None = None
    top_k: int = Field(default=5, ge=1, le=1000)
    min_score: float | None = Field(default=None, ge=0, le=1)
    chunking: Chunking = Field(default_factory=Chunking)
    sources: list[str] = Field(default_factory=list)
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class AdapterSpec(StrictModel):
    """A fine-tuned adapter (LoRA and friends) for a base model: a file or a URI."""

    adapter_id: str
    base_model: str = Field(min_length=1)
    method: Literal["lora", "qlora", "ia3", "prefix"] = "lora"
    file: str | None = None
    uri: str | None = None
    rank: int | None = Field(default=None, ge=1)
    alpha: float | None = None
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> AdapterSpec:
        if (self.file is None) == (self.uri is None):
            raise ValueError("give exactly one of 'file' (a path next to this YAML) or 'uri'")
        return self


class DatasetSpec(StrictModel):
    """A data file (JSONL, CSV or Parquet) with a description."""

    dataset_id: str
    file: str = Field(min_length=1)
    format: Literal["jsonl", "csv", "parquet"] | None = None
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ScorerSpec(StrictModel):
    """A scorer as persisted: its registered name and arguments, never code."""

    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(default=1.0, ge=0)
    threshold: float | None = None


def _condition(value: str | float) -> str | float:
    parse_condition(value)
    return value


Condition = Annotated[str | float, AfterValidator(_condition)]


class GateSpec(StrictModel):
    """When a run passes.

    Example::

        gate:
          pass_rate: ">= 0.92"            # point estimate over cases
          pass_rate_lower_bound: ">= 0.85"  # lower end of the Wilson 95% interval
          metrics: {f1: ">= 0.8", rmse: "<= 12.5"}
          no_regression_vs: production     # compare with the last run on target@production
    """

    pass_rate: Condition | None = None
    pass_rate_lower_bound: Condition | None = None
    metrics: dict[str, Condition] = Field(default_factory=dict)
    no_regression_vs: str | None = None
    ignore_unreviewed: bool = Field(
        default=False, description="Decide without waiting for human reviews."
    )


class SuiteSpec(StrictModel):
    """An evaluation suite: target, cases, scorers, repeats and the gate."""

    suite_id: str
    target: str = Field(min_length=1)
    description: str | None = None
    dataset: str | None = None
    cases: list[dict[str, Any]] | None = None
    scorers: list[ScorerSpec] = Field(min_length=1)
    repeats: int = Field(default=1, ge=1, le=1000)
    concurrency: int = Field(default=4, ge=1, le=1024)
    timeout_s: float = Field(default=120.0, gt=0, description="Per-call timeout in seconds.")
    seed: int = Field(default=0, description="Base seed; attempt k of a case uses seed + k.")
    judge_model: str | None = Field(
        default=None, description="Default model for llm_judge/groundedness scorers."
    )
    gate: GateSpec = Field(default_factory=GateSpec)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_dataset(self) -> SuiteSpec:
        if (self.dataset is None) == (self.cases is None):
            raise ValueError("give exactly one of 'dataset' (a file path) or inline 'cases'")
        return self


@dataclass(frozen=True)
class Kind:
    """How one artifact kind is recognised, validated and stored."""

    name: str
    id_field: str
    schema: type[BaseModel]
    file_fields: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("prompt", "prompt_id", PromptSpec),
        Kind("model", "model_id", ModelSpec, ("file",)),
        Kind("rag", "rag_id", RagSpec),
        Kind("adapter", "adapter_id", AdapterSpec, ("file",)),
        Kind("dataset", "dataset_id", DatasetSpec, ("file",)),
        Kind("suite", "suite_id", SuiteSpec, ("dataset",)),
    )
}

ID_FIELDS = {kind.id_field: kind for kind in KINDS.values()}


def kind_of(data: dict[str, Any]) -> list[Kind]:
    """The kinds whose id field appears in `data` (normally exactly one)."""
    return [kind for field, kind in ID_FIELDS.items() if field in data]
