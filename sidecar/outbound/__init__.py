"""Provides the way out: Chatwoot's REST API and posting a crew's answer exactly once.

- ``chatwoot``: the REST client (one call per method, failures as ChatwootError).
- ``replies``: a crew's actions expanded into steps, each committed before its call.
"""
