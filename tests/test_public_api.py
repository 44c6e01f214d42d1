"""The public surface: explicit, sorted, importable, and cheap to import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import lockgate

PACKAGES = [
    "lockgate",
    "lockgate.registry",
    "lockgate.store",
    "lockgate.governance",
    "lockgate.providers",
    "lockgate.accounting",
    "lockgate.testing",
    "lockgate.evals",
    "lockgate.scorers",
    "lockgate.gateway",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_explicit_and_every_name_exists(name: str) -> None:
    # Ordering is ruff's RUF022 (constants, classes, functions); this checks content.
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported))
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


def test_load_prompt_is_public() -> None:
    assert callable(lockgate.load_prompt)
    assert lockgate.Registry.__module__.startswith("lockgate.registry")


def test_import_lockgate_loads_no_heavy_runtime() -> None:
    code = (
        "import sys, lockgate, lockgate.providers, lockgate.accounting, lockgate.gateway;"
        "heavy = {'llama_cpp', 'torch', 'sentence_transformers', 'uvicorn'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
