"""Provides the crew back-ends: one interface, several ways of reaching a crew."""
