"""Provides the console's screens: one module per view, modals in ``*_modal.py``."""
