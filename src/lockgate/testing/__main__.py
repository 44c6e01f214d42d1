"""Run the scripted upstream as its own process (for benchmarks and manual poking).

Example:
    python -m lockgate.testing --port 8099 --latency-ms 20 --script rules.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lockgate.errors import UserError
from lockgate.testing._upstream import ScriptedUpstream
from lockgate.testing._upstream_script import load_rules


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lockgate.testing",
        description="Serve a scripted OpenAI/Anthropic-compatible upstream until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: 0, a free one)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="milliseconds before every response"
    )
    parser.add_argument(
        "--latency-max-ms",
        type=float,
        default=None,
        help="with --latency-ms, draw each latency uniformly from [latency-ms, latency-max-ms]",
    )
    parser.add_argument("--script", default=None, help="rules YAML: a list of Rule field mappings")
    parser.add_argument("--default-reply", default="ok", help="reply when no rule matches")
    parser.add_argument("--model-name", default=None, help="model to report (default: echo)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve, and return the exit code."""
    args = _parser().parse_args(argv)
    latency: float | tuple[float, float] = args.latency_ms / 1000
    if args.latency_max_ms is not None:
        latency = (args.latency_ms / 1000, args.latency_max_ms / 1000)
    try:
        rules = load_rules(args.script) if args.script else []
        upstream = ScriptedUpstream(
            rules,
            latency=latency,
            default_reply=args.default_reply,
            model_name=args.model_name,
            host=args.host,
            port=args.port,
        )
    except (UserError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        upstream.serve_forever(lambda url: print(url, flush=True))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
