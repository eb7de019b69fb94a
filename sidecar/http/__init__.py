"""Provides the sidecar's HTTP surface: one blueprint per endpoint group (``routes``)."""
