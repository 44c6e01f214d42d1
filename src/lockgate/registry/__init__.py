"""The artifact registry: prompts, models, RAG configs, adapters, datasets and suites as
immutable, content-addressed versions with movable environment labels."""

from lockgate.registry._kinds import KINDS, Kind
from lockgate.registry._loader import LoadedArtifact, load_artifact
from lockgate.registry._prompt import Prompt, PromptSpec
from lockgate.registry._refs import Ref
from lockgate.registry._registry import (
    ArtifactSummary,
    ArtifactVersion,
    LabelMove,
    LabelState,
    PushReport,
    PushResult,
    Registry,
)

__all__ = [
    "KINDS",
    "ArtifactSummary",
    "ArtifactVersion",
    "Kind",
    "LabelMove",
    "LabelState",
    "LoadedArtifact",
    "Prompt",
    "PromptSpec",
    "PushReport",
    "PushResult",
    "Ref",
    "Registry",
    "load_artifact",
]
