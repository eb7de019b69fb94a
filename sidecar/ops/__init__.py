"""Provides what operators see: health, metrics, logs, and the supervision of background loops."""
