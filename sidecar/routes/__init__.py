"""Provides the sidecar's HTTP routes, one blueprint per endpoint group."""

from __future__ import annotations

from sanic import Blueprint

from sidecar.routes import health, webhooks

api = Blueprint.group(webhooks.bp, health.bp)
