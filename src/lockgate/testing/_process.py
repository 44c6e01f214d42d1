"""The scripted upstream, and a whole gateway, in child processes: for benchmarks and
multi-process tests.

A benchmark that runs the upstream in its own process measures lockgate, not the
upstream sharing lockgate's event loop and GIL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@contextmanager
def upstream_process(
    *,
    latency_ms: float = 0.0,
    script: Path | None = None,
    default_reply: str = "ok",
) -> Iterator[str]:
    """Start ``python -m lockgate.testing`` in a child process; yield its base URL.

    Example:
        >>> with upstream_process(latency_ms=20) as url:
        ...     base_url = url + "/v1"
    """
    command = [
        sys.executable,
        "-m",
        "lockgate.testing",
        "--latency-ms",
        str(latency_ms),
        "--default-reply",
        default_reply,
    ]
    if script is not None:
        command += ["--script", str(script)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the scripted upstream did not start (exit {process.poll()})")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@dataclass
class ServedGateway:
    """A `lockgate serve` child process, as yielded by `gateway_process`.

    `returncode` and `stderr` are filled in once the process has stopped.
    """

    url: str  # http://127.0.0.1:PORT
    port: int
    api_key: str  # a key of the tenant "acme"
    home: Path  # the directory holding lockgate.yaml and the database
    pid: int
    returncode: int | None = None
    stderr: str = ""


@contextmanager
def gateway_process(
    upstream: str, directory: Path, *, core: int | None = None, ready_timeout: float = 60.0
) -> Iterator[ServedGateway]:
    """Serve a gateway in a child process: route ``fast`` to ``up/gpt-4o-mini-2024-07-18``
    on the OpenAI-compatible `upstream` (a base URL without ``/v1``), tenant ``acme`` with
    one key, settings and SQLite database in `directory`. Stopped with SIGTERM (traces
    drain) at the end of the block.

    Args:
        core: pin the gateway to this CPU (``taskset``), for benchmarks.
        ready_timeout: seconds to wait for ``/readyz``.

    Raises:
        RuntimeError: the gateway exited or was not ready in time (with its stderr).
    """
    from lockgate.config import load_settings
    from lockgate.governance._tenants import Limits, TenantStore
    from lockgate.store import Store

    (directory / "lockgate.yaml").write_text(
        f"home: home\nproviders:\n  up: {{type: openai, base_url: '{upstream}/v1'}}\n"
        "routes:\n  fast: {deployments: [up/gpt-4o-mini-2024-07-18]}\n"
    )
    store = Store.open(load_settings(cwd=directory))
    try:
        tenants = TenantStore(store, actor="test")
        tenants.create_tenant("acme", Limits())
        _, secret = tenants.create_key("acme")
    finally:
        store.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [str(Path(sys.executable).parent / "lockgate"), "serve", "--port", str(port)]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, cwd=directory, env=env, stderr=errors, text=True)
        served = ServedGateway(f"http://127.0.0.1:{port}", port, secret, directory, process.pid)
        try:
            _wait_ready(served.url, process, errors, ready_timeout)
            yield served
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            errors.seek(0)
            served.returncode, served.stderr = process.returncode, errors.read()


def _wait_ready(url: str, process: subprocess.Popen[str], errors: IO[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    errors.seek(0)
    state = f"exited with {process.returncode}" if process.poll() is not None else "not ready"
    raise RuntimeError(f"the gateway {state} after {timeout:g}s; its stderr:\n{errors.read()}")
