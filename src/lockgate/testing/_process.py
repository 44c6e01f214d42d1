"""The scripted upstream in a child process, for benchmarks and multi-process tests.

A benchmark that runs the upstream in its own process measures lockgate, not the
upstream sharing lockgate's event loop and GIL.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
