"""Provides the console's reusable widgets."""
