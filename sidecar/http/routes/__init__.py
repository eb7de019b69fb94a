"""Provides the sidecar's HTTP routes, one blueprint per endpoint group."""

from __future__ import annotations

from sanic import Blueprint

from sidecar.http.routes import (
    admin,
    crew_callbacks,
    erasure,
    health,
    metrics,
    stats,
    status,
    webhooks,
)

api = Blueprint.group(webhooks.bp, health.bp, crew_callbacks.bp, status.bp, metrics.bp, admin.bp, stats.bp,
                      erasure.bp)
