"""Gateway overhead and throughput next to LiteLLM's proxy and MLflow's AI gateway;
lockgate's memory and event-loop health.

Targets (issue 5), against the scripted upstream at 0 ms with one worker process pinned
to one core: sequential added latency p50 ≤ 1 ms and p99 ≤ 3 ms; at 64 concurrent
clients, throughput at least 10x LiteLLM's and no lower than MLflow's, all three measured
here, the same way, against the same upstream; RSS under 150 MB idle (ready to serve:
tokenizers and prices loaded); no event-loop stall over 20 ms while 30 streaming clients
disconnect mid-stream. lockgate runs with auth, limits, traces and metrics on, its exact
cache bypassed so every request reaches the upstream; LiteLLM with its master key (it
refuses to start without one); MLflow's config-file gateway has no auth.

LiteLLM and MLflow run from their own virtualenvs under ``.bench/venvs`` (see
``benchmarks/_competitors.py``), built on first use from PyPI: about 2.5 minutes and
1.7 GB once, then cached. ``--skip-competitors`` measures lockgate alone.

Throughput is measured with ``wrk`` (Debian package ``wrk``): a Python load generator
saturates its own core long before the gateway does. Without wrk the script says so and
uses httpx, whose figure is the client's limit, not the gateway's.

Run: ``python benchmarks/bench_gateway.py [--requests 2000] [--skip-competitors]``.
Prints figures next to targets; never fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _competitors import competitor  # this directory is on sys.path when run as a script

from lockgate.testing import gateway_process, upstream_process

BODY = {"model": "fast", "messages": [{"role": "user", "content": "ping"}]}
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Load:
    rps: float
    non_2xx: int
    socket_errors: str  # wrk's "connect N, read N, write N, timeout N", or ""

    def problems(self) -> str:
        notes = [f"{self.non_2xx} non-2xx"] if self.non_2xx else []
        if self.socket_errors:
            notes.append(f"socket errors: {self.socket_errors}")
        return "; ".join(notes)


@dataclass(frozen=True)
class Measured:
    name: str
    added_p50: float  # ms
    added_p99: float  # ms
    at16: Load
    at64: Load


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


def wrk_throughput(url: str, headers: dict[str, str], connections: int, seconds: int = 5) -> Load:
    """Requests/s from wrk (one thread, on this process's core, off the gateway's).

    Requests that time out (10 s) or fail at the socket do not count; they are reported.
    """
    script = Path(tempfile.mkdtemp()) / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = '{json.dumps(BODY)}'"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in {**JSON, **headers}.items()]
    script.write_text("\n".join(lines) + "\n")
    command = ["wrk", "-t1", f"-c{connections}", "--timeout", "10s", "-s", str(script)]
    subprocess.run([*command, "-d2s", url], capture_output=True, check=True)  # warm-up
    out = subprocess.run(
        [*command, f"-d{seconds}s", url], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return Load(
        float(match.group(1)),
        int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors.group(1).strip() if socket_errors else "",
    )


def throughput(url: str, headers: dict[str, str], connections: int, total: int) -> Load:
    if shutil.which("wrk"):
        return wrk_throughput(url, headers, connections)
    rps = asyncio.run(concurrent(url, {**headers, **JSON}, total, connections))
    return Load(rps, 0, "")


def measure(
    name: str, url: str, headers: dict[str, str], direct_url: str, requests: int
) -> Measured:
    """Sequential added latency against the bare upstream, then throughput at 16 and 64."""
    with httpx.Client(timeout=30) as client:
        sequential(client, direct_url, {}, 200)  # warm both
        sequential(client, url, headers, 200)
        direct = sequential(client, direct_url, {}, requests)
        via = sequential(client, url, headers, requests)
    return Measured(
        name=name,
        added_p50=statistics.median(via) - statistics.median(direct),
        added_p99=percentile(via, 0.99) - percentile(direct, 0.99),
        at16=throughput(url, headers, 16, requests),
        at64=throughput(url, headers, 64, requests * 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--skip-competitors", action="store_true", help="measure lockgate alone")
    args = parser.parse_args()
    cores = os.sched_getaffinity(0)
    gateway_core = min(cores)
    other_cores = sorted(cores - {gateway_core}) or [gateway_core]
    os.sched_setaffinity(0, other_cores)  # this process and the upstream stay off it

    script = Path(tempfile.mkdtemp()) / "rules.yaml"
    script.write_text(
        "- {match: '^long', reply: '" + " ".join(["word"] * 400) + "', chunks: 400,"
        " chunk_interval: 0.005}\n- {match: null, reply: pong}\n"
    )
    results: list[Measured] = []
    with upstream_process(script=script) as upstream:
        direct = upstream + "/v1/chat/completions"
        with (
            tempfile.TemporaryDirectory() as tmp,
            gateway_process(upstream, Path(tmp), core=gateway_core) as gateway,
        ):
            base, port, secret, pid = gateway.url, gateway.port, gateway.api_key, gateway.pid
            time.sleep(0.5)
            idle = rss_mb(pid)
            headers = {"authorization": f"Bearer {secret}", "x-lockgate-cache": "bypass"}
            url = base + "/v1/chat/completions"
            results.append(measure("lockgate", url, headers, direct, args.requests))
            storm = disconnect_storm(base, port, headers, other_cores[0])
            loaded = rss_mb(pid)
        if not args.skip_competitors:
            for name in ("litellm", "mlflow"):
                try:
                    with competitor(name, upstream + "/v1", free_port(), gateway_core) as gw:
                        label = f"{name} {gw.version}"
                        results.append(measure(label, gw.url, gw.headers, direct, args.requests))
                except RuntimeError as exc:
                    print(f"{name}: not measured: {exc}", file=sys.stderr)

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    generator = "wrk" if shutil.which("wrk") else "httpx (client-bound: install wrk)"
    print(
        f"one worker pinned to core {gateway_core}; load, upstream and this script on "
        f"{other_cores}; throughput by {generator}"
    )
    print(f"{'':22} {'added p50':>10} {'added p99':>10} {'req/s @16':>10} {'req/s @64':>10}")
    for m in results:
        print(
            f"{m.name:22} {m.added_p50:8.3f}ms {m.added_p99:8.3f}ms {m.at16.rps:10,.0f} "
            f"{m.at64.rps:10,.0f}  {m.at64.problems()}"
        )
    ours = results[0]
    print(
        f"sequential added p50   {ours.added_p50:.3f} ms (target ≤ 1 ms)  "
        f"{verdict(ours.added_p50 <= 1)}"
    )
    print(
        f"sequential added p99   {ours.added_p99:.3f} ms (target ≤ 3 ms)  "
        f"{verdict(ours.added_p99 <= 3)}"
    )
    by_name = {m.name.split()[0]: m for m in results}
    if "litellm" in by_name:
        ratio = ours.at64.rps / by_name["litellm"].at64.rps
        print(f"throughput @64 vs LiteLLM  {ratio:.1f}x (target ≥ 10x)  {verdict(ratio >= 10)}")
    if "mlflow" in by_name:
        ratio = ours.at64.rps / by_name["mlflow"].at64.rps
        print(f"throughput @64 vs MLflow   {ratio:.2f}x (target ≥ 1x)  {verdict(ratio >= 1)}")
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
