"""The OpenAI-compatible gateway (in progress: see the issue tracker).

Modules land here as they are finished; nothing is wired into ``lockgate serve`` until the
app factory is complete.
"""

__all__: list[str] = []
