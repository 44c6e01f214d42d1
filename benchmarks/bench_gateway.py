"""Gateway overhead, throughput, memory and event-loop health.

Targets (issue 5), against the scripted upstream at 0 ms with one gateway worker process
pinned to one core: sequential added latency p50 ≤ 1 ms and p99 ≤ 3 ms; throughput at 64
concurrent clients (for scale: LiteLLM 1.108 saturated near 110 requests/s on one core
on this kind of machine, MLflow's gateway served ~1,900 requests/s at 16 clients); RSS
under 150 MB idle; no event-loop stall over 20 ms while 30 streaming clients disconnect
mid-stream. The gateway runs with auth, limits, traces and metrics on; the exact cache
is bypassed so every request reaches the upstream.

LiteLLM and MLflow are not installed by this project; their figures above are the ones
quoted in the issue, not measured by this script. Throughput is measured with `wrk`
(Debian package) when it is installed: a Python load generator saturates its own core
long before the gateway does (httpx at 64 connections managed ~300 requests/s against
the bare upstream here).

Run: ``python benchmarks/bench_gateway.py [--requests 2000]``. Prints figures next to
targets; never fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from lockgate.config import load_settings
from lockgate.governance._tenants import Limits, TenantStore
from lockgate.store import Store
from lockgate.testing import upstream_process

BODY = {"model": "fast", "messages": [{"role": "user", "content": "ping"}]}


@dataclass(frozen=True)
class Storm:
    samples: int  # event-loop lag samples taken during the storm
    over_20ms: int  # of which over 20 ms
    worst_bound_s: float  # the worst sample was at most this
    probe_worst_ms: float  # worst /healthz latency seen from another process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sequential(client: httpx.Client, url: str, headers: dict[str, str], n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post(url, json=BODY, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return times


async def concurrent(url: str, headers: dict[str, str], total: int, workers: int) -> float:
    remaining = iter(range(total))
    limits = httpx.Limits(max_connections=workers)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            for _ in remaining:
                (await client.post(url, json=BODY, headers=headers)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return total / (time.perf_counter() - started)


def lag_buckets(base: str) -> dict[float, float]:
    """Cumulative counts of the gateway's ``lockgate_event_loop_lag_seconds`` buckets."""
    text = httpx.get(base + "/metrics", timeout=10).text
    pattern = r'lockgate_event_loop_lag_seconds_bucket\{le="([^"]+)"\} ([\d.e+]+)'
    return {float(le): float(n) for le, n in re.findall(pattern, text)}


def probe_process(port: int, core: int, seconds: float) -> subprocess.Popen[str]:
    """A separate process timing ``GET /healthz`` every 5 ms; prints the worst, in ms."""
    code = (
        "import http.client, sys, time\n"
        f"c = http.client.HTTPConnection('127.0.0.1', {port})\n"
        f"end = time.perf_counter() + {seconds}; worst = 0.0\n"
        "while time.perf_counter() < end:\n"
        "    t = time.perf_counter(); c.request('GET', '/healthz'); c.getresponse().read()\n"
        "    worst = max(worst, time.perf_counter() - t); time.sleep(0.005)\n"
        "print(worst * 1000)\n"
    )
    command = ["taskset", "-c", str(core), sys.executable, "-c", code]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


async def hang_up_streams(base: str, headers: dict[str, str], clients: int = 30) -> None:
    """`clients` streaming requests that each hang up after two chunks, all at once."""
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def streamer(n: int) -> None:
            body = {**BODY, "stream": True, "messages": [{"role": "user", "content": f"long {n}"}]}
            async with client.stream(
                "POST", base + "/v1/chat/completions", json=body, headers=headers
            ) as response:
                seen = 0
                async for _ in response.aiter_lines():
                    seen += 1
                    if seen >= 2:
                        break  # hang up mid-stream

        await asyncio.gather(*(streamer(n) for n in range(clients)))


def disconnect_storm(base: str, port: int, headers: dict[str, str], core: int) -> Storm:
    """Event-loop health while 30 streaming clients hang up mid-stream.

    Measured twice: inside the gateway (its event-loop lag histogram, sampled every
    10 ms: the stall itself), and from outside by a ``/healthz`` prober in its own
    process. The prober shares a core with the upstream and this script, so its worst
    figure includes their scheduling, not only the gateway's.
    """
    before = lag_buckets(base)
    prober = probe_process(port, core, seconds=2.0)
    time.sleep(0.3)
    asyncio.run(hang_up_streams(base, headers))
    out, _ = prober.communicate(timeout=30)
    after = lag_buckets(base)
    delta = {le: after[le] - before.get(le, 0.0) for le in after}
    samples = delta[math.inf]
    over_20ms = samples - delta[0.02]
    worst_bound = min(le for le, n in delta.items() if n == samples)
    return Storm(
        samples=int(samples),
        over_20ms=int(over_20ms),
        worst_bound_s=worst_bound,
        probe_worst_ms=float(out.strip() or "nan"),
    )


def wrk_throughput(url: str, secret: str, connections: int, seconds: int = 5) -> float:
    """Requests/s from wrk (one thread, pinned with this process off the gateway's core)."""
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(BODY)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {secret}"\n'
        'wrk.headers["x-lockgate-cache"] = "bypass"\n'
    )
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    subprocess.run([*command[:3], "-d2s", *command[4:]], capture_output=True, check=True)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if "Non-2xx" in out or match is None:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    cores = os.sched_getaffinity(0)
    gateway_core = [min(cores)]
    other_cores = sorted(cores - set(gateway_core)) or gateway_core
    os.sched_setaffinity(0, other_cores)  # this process and the upstream stay off it

    script = Path(tempfile.mkdtemp()) / "rules.yaml"
    script.write_text(
        "- {match: '^long', reply: '" + " ".join(["word"] * 400) + "', chunks: 400,"
        " chunk_interval: 0.005}\n- {match: null, reply: pong}\n"
    )
    with tempfile.TemporaryDirectory() as tmp, upstream_process(script=script) as upstream:
        home = Path(tmp)
        (home / "lockgate.yaml").write_text(
            f"home: home\nproviders:\n  up: {{type: openai, base_url: '{upstream}/v1'}}\n"
            "routes:\n  fast: {deployments: [up/gpt-4o-mini-2024-07-18]}\n"
        )
        settings = load_settings(cwd=home)
        store = Store.open(settings)
        tenants = TenantStore(store, actor="bench")
        tenants.create_tenant("bench", Limits())
        _, secret = tenants.create_key("bench")
        store.close()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
        server = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(gateway_core[0]),
                str(Path(sys.executable).parent / "lockgate"),
                "serve",
                "--port",
                str(port),
            ],
            cwd=home,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            time.sleep(0.5)
            idle = rss_mb(server.pid)
            headers = {"authorization": f"Bearer {secret}", "x-lockgate-cache": "bypass"}
            with httpx.Client(timeout=30) as client:
                sequential(client, upstream + "/v1/chat/completions", {}, 200)  # warm
                sequential(client, base + "/v1/chat/completions", headers, 200)
                direct = sequential(client, upstream + "/v1/chat/completions", {}, args.requests)
                via = sequential(client, base + "/v1/chat/completions", headers, args.requests)
            added50 = statistics.median(via) - statistics.median(direct)
            added99 = percentile(via, 0.99) - percentile(direct, 0.99)
            if shutil.which("wrk"):
                rps = wrk_throughput(base + "/v1/chat/completions", secret, args.concurrency)
                generator = "wrk"
            else:
                rps = asyncio.run(
                    concurrent(
                        base + "/v1/chat/completions", headers, args.requests * 2, args.concurrency
                    )
                )
                generator = "httpx (client-bound: install wrk for a real figure)"
            storm = disconnect_storm(base, port, headers, other_cores[0])
            loaded = rss_mb(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    print(f"gateway pinned to core {gateway_core[0]}; client and upstream on {other_cores}")
    print(f"sequential added p50   {added50:.3f} ms   (target ≤ 1 ms)  {verdict(added50 <= 1)}")
    print(f"sequential added p99   {added99:.3f} ms   (target ≤ 3 ms)  {verdict(added99 <= 3)}")
    print(
        f"  direct p50/p99 {statistics.median(direct):.3f}/{percentile(direct, 0.99):.3f} ms,"
        f" via gateway {statistics.median(via):.3f}/{percentile(via, 0.99):.3f} ms"
    )
    print(
        f"throughput @{args.concurrency}       {rps:,.0f} requests/s via {generator}  "
        f"(LiteLLM ~110/core → 10x = 1,100; MLflow ~1,900 @16)  {verdict(rps >= 1100)}"
    )
    print(
        f"RSS idle / after load  {idle:.0f} MB / {loaded:.0f} MB  (target idle < 150 MB)  "
        f"{verdict(idle < 150)}"
    )
    print(
        f"event-loop lag during 30 mid-stream disconnects  {storm.over_20ms} of "
        f"{storm.samples} samples over 20 ms, worst ≤ {storm.worst_bound_s * 1000:g} ms  "
        f"(target no stall > 20 ms)  {verdict(storm.over_20ms == 0)}"
    )
    print(f"  worst /healthz latency seen from another process: {storm.probe_worst_ms:.1f} ms")


if __name__ == "__main__":
    main()
