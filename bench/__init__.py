"""Benchmarks of the sidecar (issue 7): ``make bench`` runs ``bench/run.py``."""
