"""LiteLLM's proxy and MLflow's AI gateway, run locally so the gateway benchmark measures them.

``competitor(name, upstream_v1, port, core)`` is a context manager that yields a running
competitor gateway with one route, ``fast``, pointed at an OpenAI-compatible upstream
(the project's scripted upstream in the benchmarks), serving on ``127.0.0.1:port`` with
one worker process pinned to one CPU core (``taskset -c core``). On exit the server's
whole process group is terminated.

Each competitor lives in its own virtualenv, ``.bench/venvs/<name>-<version>`` at the
repository root unless told otherwise, made with this interpreter's ``-m venv`` and a pip
install of a pinned release. The venv is created on first use — that downloads a few
hundred MB from PyPI and takes a minute or two per competitor — and cached after that;
progress goes to stderr and pip's full output to ``<name>-<version>.pip.log`` beside it.
Before installing, pip resolves the requirement with ``--dry-run`` and the install is
refused if it would pull in torch (or CUDA wheels).

Both servers run offline: no telemetry, LiteLLM's bundled model cost map instead of the
remote one, no database. LiteLLM gets a master key (lockgate's benchmark runs with auth
on); MLflow's config-file gateway has no authentication of its own.

    with competitor("litellm", upstream + "/v1", port=8123, core=0) as gw:
        httpx.post(gw.url, headers=gw.headers, json={"model": gw.body_model, ...})

Run ``python benchmarks/_competitors.py [litellm] [mlflow]`` to build the venvs ahead of
time and check that each competitor answers a chat request through the scripted upstream.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / ".bench" / "venvs"
UPSTREAM_MODEL = "gpt-4o-mini-2024-07-18"
ROUTE = "fast"
LITELLM_MASTER_KEY = "sk-lockgate-bench"
# Packages a competitor's install must never bring in (torch alone is gigabytes).
FORBIDDEN_PREFIXES = ("torch", "nvidia-", "triton")
_MARKER = ".lockgate-bench-complete"


@dataclass(frozen=True)
class Competitor:
    """A running competitor gateway, as yielded by :func:`competitor`."""

    name: str
    version: str
    url: str  # full chat-completions URL
    headers: dict[str, str]
    body_model: str  # the model name to put in the request body
    pid: int  # the launched process; it leads a process group holding any workers


@dataclass(frozen=True)
class _Spec:
    package: str
    version: str
    extra: str
    write_config: Callable[[Path, str], Path]  # (workdir, upstream_v1) -> config path
    command: Callable[[Path, Path, int], list[str]]  # (venv bin, config, port) -> argv
    env: dict[str, str]
    health_path: str
    chat_path: str
    headers: dict[str, str]

    @property
    def requirement(self) -> str:
        return f"{self.package}[{self.extra}]=={self.version}"


def _write_json_yaml(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n")  # JSON is YAML
    return path


def _litellm_config(workdir: Path, upstream_v1: str) -> Path:
    return _write_json_yaml(
        workdir / "litellm.yaml",
        {
            "model_list": [
                {
                    "model_name": ROUTE,
                    "litellm_params": {
                        "model": f"openai/{UPSTREAM_MODEL}",
                        "api_base": upstream_v1,
                        "api_key": "dummy",
                    },
                }
            ],
            "general_settings": {"master_key": LITELLM_MASTER_KEY},
        },
    )


def _mlflow_config(workdir: Path, upstream_v1: str) -> Path:
    return _write_json_yaml(
        workdir / "mlflow.yaml",
        {
            "endpoints": [
                {
                    "name": ROUTE,
                    "endpoint_type": "llm/v1/chat",
                    "model": {
                        "provider": "openai",
                        "name": UPSTREAM_MODEL,
                        "config": {"openai_api_key": "dummy", "openai_api_base": upstream_v1},
                    },
                }
            ]
        },
    )


SPECS: dict[str, _Spec] = {
    # 1.110.x needs `litellm-proxy`, and 1.108.8-1.109.x pins proxy extras, neither of which
    # PyPI serves here; 1.108.7 is the newest release whose [proxy] extra installs.
    "litellm": _Spec(
        package="litellm",
        version="1.108.7",
        extra="proxy",
        write_config=_litellm_config,
        command=lambda bin_dir, config, port: [
            str(bin_dir / "litellm"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env={
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY_DISABLED": "True",
            "DISABLE_SCHEMA_UPDATE": "True",
        },
        health_path="/health/liveliness",
        chat_path="/v1/chat/completions",
        headers={"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
    ),
    # 3.18.0 needs mlflow-skinny/mlflow-tracing 3.18.0, which PyPI does not serve here.
    # `mlflow gateway start` (the config-file gateway, deprecated in 3.x in favour of the
    # tracking server's UI-managed gateway) runs gunicorn with uvicorn workers.
    "mlflow": _Spec(
        package="mlflow",
        version="3.17.2",
        extra="genai",
        write_config=_mlflow_config,
        command=lambda bin_dir, config, port: [
            str(bin_dir / "mlflow"),
            "gateway",
            "start",
            "--config-path",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS": "true",
        },
        health_path="/health",
        chat_path="/v1/chat/completions",  # OpenAI-compatible; the body's model names the endpoint
        headers={},
    ),
}


def _say(message: str) -> None:
    print(f"[competitors] {message}", file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 40) -> str:
    """The log's last ``lines`` lines, after any earlier error lines (a shutdown traceback
    often buries the one that says why)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text[:-lines] if "ERROR" in line or "Error:" in line][-10:]
    shown = [*errors, "[...]", *text[-lines:]] if errors else text[-lines:]
    return "\n".join(shown) or "(empty log)"


def _run_logged(command: list[str], log: Path, what: str) -> None:
    """Run ``command``, appending its output to ``log``; report pip's progress on stderr."""
    collected = 0
    started = time.monotonic()
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            sink.write(line)
            if line.startswith("Collecting "):
                collected += 1
                if collected % 25 == 0:
                    elapsed = time.monotonic() - started
                    _say(f"  {what}: {collected} packages collected ({elapsed:.0f} s)")
            elif line.startswith("Installing collected packages"):
                _say(f"  {what}: installing {collected} packages")
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"{what} failed (exit {code}); last lines of {log}:\n{_tail(log)}")


def _forbidden(report: Path) -> list[str]:
    installs = json.loads(report.read_text()).get("install", [])
    names = [str(item["metadata"]["name"]).lower() for item in installs]
    return sorted(n for n in names if n.startswith(FORBIDDEN_PREFIXES))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_venv(name: str, cache_dir: Path | None = None) -> Path:
    """Return the competitor's virtualenv, creating it on first use (takes minutes)."""
    spec = SPECS[name]
    root = cache_dir or DEFAULT_CACHE_DIR
    root.mkdir(parents=True, exist_ok=True)
    key = f"{name}-{spec.version}"
    venv = root / key
    marker = venv / _MARKER
    with _locked(root / f"{key}.lock"):
        if marker.exists() and marker.read_text().strip() == spec.requirement:
            return venv
        if venv.exists():
            shutil.rmtree(venv)  # an interrupted or different install
        log = root / f"{key}.pip.log"
        log.write_text("")
        started = time.monotonic()
        _say(f"creating {venv} for {spec.requirement} (first use only: takes a few minutes)")
        try:
            _run_logged([sys.executable, "-m", "venv", str(venv)], log, "venv")
            pip = [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "--disable-pip-version-check",
                "--no-input",
                "install",
                "--progress-bar",
                "off",
            ]
            report = venv / "pip-report.json"
            _say(f"  resolving {spec.requirement}")
            _run_logged(
                [*pip, "--dry-run", "--report", str(report), spec.requirement], log, "pip resolve"
            )
            if banned := _forbidden(report):
                raise RuntimeError(
                    f"{spec.requirement} would install {', '.join(banned)}; refusing to install it"
                )
            _run_logged([*pip, spec.requirement], log, "pip install")
            installed = subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-c",
                    f"import importlib.metadata as m; print(m.version({spec.package!r}))",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if installed != spec.version:
                raise RuntimeError(f"{venv} has {spec.package} {installed}, not {spec.version}")
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        marker.write_text(spec.requirement + "\n")
        _say(f"{key} ready in {time.monotonic() - started:.0f} s (cached in {venv})")
        return venv


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group ``process`` leads, then SIGKILL whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                try:
                    os.killpg(process.pid, 0)  # workers of the group still alive?
                except ProcessLookupError:
                    return
            time.sleep(0.05)
    process.wait()


def _wait_ready(
    spec: _Spec,
    process: subprocess.Popen[bytes],
    base: str,
    url: str,
    log: Path,
    timeout: float,
) -> None:
    """Wait for the health endpoint, then require a real chat request to return 200."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{spec.package} exited with code {process.returncode} before it was ready;"
                    f" last lines of its log:\n{_tail(log)}"
                )
            try:
                if client.get(base + spec.health_path).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{spec.package} was not ready after {timeout:.0f} s;"
                    f" last lines of its log:\n{_tail(log)}"
                )
            time.sleep(0.2)
        body = {"model": ROUTE, "messages": [{"role": "user", "content": "ping"}]}
        try:
            response = client.post(url, json=body, headers=spec.headers, timeout=30)
        except httpx.HTTPError as exc:
            raise RuntimeError(
                f"{spec.package}: first chat request failed ({exc!r}); last lines of its log:\n"
                f"{_tail(log)}"
            ) from exc
        if response.status_code != 200:
            raise RuntimeError(
                f"{spec.package}: first chat request returned {response.status_code}:"
                f" {response.text[:500]}\nlast lines of its log:\n{_tail(log)}"
            )


@contextmanager
def competitor(
    name: str,
    upstream_v1: str,
    port: int,
    core: int,
    cache_dir: Path | None = None,
    ready_timeout: float = 180.0,
) -> Iterator[Competitor]:
    """Run competitor ``name`` ("litellm" or "mlflow") against ``upstream_v1``; yield it.

    ``upstream_v1`` is an OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``). The
    server listens on ``127.0.0.1:port``, runs one worker pinned to CPU ``core``, and is
    ready (it has answered one chat request with 200) when this yields.

    Raises:
        KeyError: ``name`` is not a known competitor.
        RuntimeError: the venv could not be built, or the server never became ready
            (the message carries the last lines of its log).
    """
    if name not in SPECS:
        raise KeyError(f"unknown competitor {name!r}; known: {', '.join(SPECS)}")
    spec = SPECS[name]
    venv = ensure_venv(name, cache_dir)
    bin_dir = venv / "bin"
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        workdir = Path(tmp)
        config = spec.write_config(workdir, upstream_v1)
        log = workdir / "server.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
            and not k.startswith("LOCKGATE_")
        }
        env.update(spec.env)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        env["HOME"] = str(workdir)  # e.g. gunicorn's control socket, ~/.cache: kept in here
        base = f"http://127.0.0.1:{port}"
        url = base + spec.chat_path
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["taskset", "-c", str(core), *spec.command(bin_dir, config, port)],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so _stop reaches the workers
            )
        try:
            _wait_ready(spec, process, base, url, log, ready_timeout)
            yield Competitor(
                name=name,
                version=spec.version,
                url=url,
                headers=dict(spec.headers),
                body_model=ROUTE,
                pid=process.pid,
            )
        finally:
            _stop(process)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str]) -> None:
    """Build each named competitor's venv and check one chat request through it."""
    from lockgate.testing import upstream_process

    names = argv or list(SPECS)
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text("- {match: null, reply: pong}\n")
        with upstream_process(script=rules) as upstream:
            for name in names:
                with competitor(name, upstream + "/v1", _free_port(), core=0) as gw:
                    body = {
                        "model": gw.body_model,
                        "messages": [{"role": "user", "content": "ping"}],
                    }
                    reply = httpx.post(gw.url, json=body, headers=gw.headers, timeout=30)
                    content = reply.json()["choices"][0]["message"]["content"]
                    print(f"{gw.name} {gw.version}: {reply.status_code} {content!r} via {gw.url}")


if __name__ == "__main__":
    main(sys.argv[1:])
