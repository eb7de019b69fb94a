"""Provides the Chatwoot ↔ MCP-Crew sidecar (a Sanic app built by ``sidecar.app.create_app``)."""

__version__ = "0.1.0"
