"""The `lockgate` command line, one module per command group."""

from lockgate.cli._main import app, main, run

__all__ = ["app", "main", "run"]
