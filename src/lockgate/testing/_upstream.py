"""`ScriptedUpstream`: an OpenAI- and Anthropic-compatible HTTP server that follows a script.

It serves on a real socket (uvicorn, in a background thread with its own event loop) so
that what is tested is the real thing: connection pools, timeouts, broken streams,
``Retry-After`` handling. It is a test fixture, never a provider a user picks.

Example:
    >>> from lockgate.testing import Rule, ScriptedUpstream
    >>> with ScriptedUpstream([Rule(match=r"refund", reply="billing")]) as up:
    ...     base_url = up.url + "/v1"  # point an OpenAI client here
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from lockgate.testing import _upstream_anthropic as anthropic
from lockgate.testing import _upstream_openai as openai
from lockgate.testing._upstream_app import DropConnection, Handler, Options, UpstreamApp
from lockgate.testing._upstream_script import RecordedRequest, Rule, Script

__all__ = ["ScriptedUpstream"]

_ROUTES: Mapping[str, Mapping[str, Handler]] = {
    "/v1/chat/completions": {"POST": openai.chat_completions},
    "/v1/embeddings": {"POST": openai.embeddings},
    "/v1/models": {"GET": openai.list_models},
    "/v1/messages": {"POST": anthropic.messages},
    "/v1/messages/count_tokens": {"POST": anthropic.count_tokens},
}

# How long a stop waits for in-flight responses before cutting their connections.
_STOP_GRACE = 2.0
_START_TIMEOUT = 10.0


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol, taught to cut a connection quietly on `DropConnection`.

    ASGI has no way to abort a response, and uvicorn logs an error for an app that raises.
    A scripted drop is not an error, so it is handled here, at the transport.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._inner = self.app
        self.app = self._guarded

    async def _guarded(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._inner(scope, receive, send)
        except DropConnection:
            # Marking the exchange over keeps uvicorn from logging or sending a 500; close()
            # flushes what was written, then ends the socket in the middle of the response.
            self.cycle.disconnected = True
            self.transport.close()


class ScriptedUpstream:
    """A scripted OpenAI/Anthropic-compatible upstream on ``127.0.0.1`` and a free port.

    Use it as a context manager (``with`` or ``async with``); it serves from a background
    thread, so a test's own event loop, or plain synchronous code, can call it.

    Example:
        >>> up = ScriptedUpstream([Rule(match=r"flaky", status=429, times=2)], latency=0.01)
        >>> with up:
        ...     url = up.url  # "http://127.0.0.1:PORT"; OpenAI base_url is url + "/v1"

    Args:
        rules: the script; the first matching rule answers (see `Rule`).
        latency: seconds before every response, or ``(min, max)`` for a uniform draw.
        default_reply: the reply when no rule matches or a rule's `reply` is None.
        model_name: the model to report; None echoes the request's ``model``.
        models: what ``GET /v1/models`` lists (default: `model_name` or
            ``"scripted-model"``).
        embedding_dims: the length of embedding vectors unless a request asks for
            ``dimensions``.
        host: the interface to listen on.
        port: the port to listen on; 0 picks a free one.
    """

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        latency: float | tuple[float, float] = 0.0,
        default_reply: str = "ok",
        model_name: str | None = None,
        *,
        models: Sequence[str] | None = None,
        embedding_dims: int = 32,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if isinstance(latency, tuple):
            low, high = latency
            if not 0 <= low <= high:
                raise ValueError(f"latency range must satisfy 0 <= min <= max, got {latency}")
            latency = (float(low), float(high))
        elif latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency}")
        if embedding_dims < 1:
            raise ValueError(f"embedding_dims must be >= 1, got {embedding_dims}")
        if models is None:
            models = [model_name or "scripted-model"]
        self._options = Options(
            default_reply=default_reply,
            model_name=model_name,
            models=tuple(models) or ("scripted-model",),
            embedding_dims=embedding_dims,
            latency=latency,
        )
        self._script = Script(rules)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._bound_port: int | None = None

    # -- what tests use -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server (OpenAI clients add ``/v1``)."""
        if self._bound_port is None:
            raise RuntimeError("the scripted upstream is not running; use it in a `with` block")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}"

    @property
    def port(self) -> int:
        """The port the running server listens on."""
        if self._bound_port is None:
            raise RuntimeError("the scripted upstream is not running")
        return self._bound_port

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """Replace the script, also while serving; every `times` counter starts again."""
        self._script.replace(rules)

    def reset(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving in a background thread; return once the server accepts requests.

        Raises:
            RuntimeError: already running, or the server failed to start.
            OSError: the port cannot be bound.
        """
        self._begin()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("the scripted upstream did not start in time")
        self._check_started()

    def stop(self) -> None:
        """Stop serving: hanging and slow requests are cut, the thread is joined."""
        thread = self._request_stop()
        if thread is not None:
            thread.join()
            self._finish()

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in this thread until SIGINT or SIGTERM; call `on_ready(url)` once listening."""
        sock = self._bind()

        def ready() -> None:
            if on_ready is not None:
                on_ready(self.url)

        try:
            asyncio.run(self._serve(sock, ready, handle_signals=True))
        finally:
            self._bound_port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # Poll instead of blocking so the caller's event loop keeps running meanwhile.
        self._begin()
        while not self._ready.is_set():
            await asyncio.sleep(0.001)
        self._check_started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        thread = self._request_stop()
        if thread is not None:
            while thread.is_alive():
                await asyncio.sleep(0.005)
            thread.join()
            self._finish()

    # -- internals ------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # proto must say TCP: asyncio only sets TCP_NODELAY on such sockets, and without it
        # Nagle's algorithm and delayed ACKs add ~40 ms to every response.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            if os.name != "nt":  # on Windows it would let another process share the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        self._bound_port = sock.getsockname()[1]
        return sock

    def _begin(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the scripted upstream is already running")
        sock = self._bind()
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run_thread,
            args=(sock,),
            name=f"scripted-upstream-{self._bound_port}",
            daemon=True,
        )
        self._thread.start()

    def _check_started(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self.stop()
            raise RuntimeError("the scripted upstream failed to start") from error

    def _run_thread(self, sock: socket.socket) -> None:
        try:
            asyncio.run(self._serve(sock, self._ready.set))
        except BaseException as exc:  # reported to the starting thread, not lost in this one
            self._error = exc
        finally:
            self._ready.set()

    def _request_stop(self) -> threading.Thread | None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return None
        if loop is not None and stop is not None:
            # The loop may have ended already (the server failed); joining is then enough.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        return thread

    def _finish(self) -> None:
        self._thread = self._loop = self._stop = None
        self._bound_port = None
        error, self._error = self._error, None
        if error is not None:
            raise RuntimeError("the scripted upstream failed while serving") from error

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    async def _serve(
        self, sock: socket.socket, ready: Callable[[], None], *, handle_signals: bool = False
    ) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        app = UpstreamApp(self._script, self._record, self._options, _ROUTES, openai.not_found)
        config = uvicorn.Config(
            app,
            http=_Protocol,
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            date_header=False,
            # Clients pool connections; closing idle ones early makes reuse races likelier.
            timeout_keep_alive=60,
        )
        state = ServerState()
        try:
            config.load()
            server = await loop.create_server(
                lambda: _Protocol(config, state, {}, loop), sock=sock, backlog=2048
            )
        except BaseException:
            sock.close()
            raise
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        self._loop, self._stop = loop, stop
        ready()
        try:
            await stop.wait()
        finally:
            await _shutdown(server, state, app)


async def _shutdown(server: asyncio.Server, state: ServerState, app: UpstreamApp) -> None:
    """Stop accepting, cut waiting requests, let the rest finish, then close every socket."""
    server.close()
    app.release()
    for connection in list(state.connections):
        connection.shutdown()  # idle keep-alive connections close now, busy ones after
    if state.tasks:
        await asyncio.wait(set(state.tasks), timeout=_STOP_GRACE)
    # Flushing what is written takes milliseconds on a local socket unless nobody reads.
    await _until_closed(state, 0.5)
    for connection in list(state.connections):
        # A client that stopped reading keeps a response from flushing; do not wait on it.
        connection.transport.abort()
    if state.tasks:
        await asyncio.wait(set(state.tasks), timeout=_STOP_GRACE)
    await _until_closed(state, _STOP_GRACE)
    await server.wait_closed()


async def _until_closed(state: ServerState, timeout: float) -> None:
    """Wait for `connection_lost` of every connection (it runs on a later turn of the loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while state.connections and loop.time() < deadline:
        await asyncio.sleep(0.001)
