"""Provides the way in: Chatwoot's webhook verified, journaled, answered, then applied.

- ``signature``: Chatwoot's HMAC over the raw body.
- ``payload``: a webhook body as a channel-independent ``Inbound``.
- ``intake``: the webhook handler's work (verify, parse, journal, answer).
- ``apply``: one journaled delivery turned into conversation state and queued work.
- ``journal_applier``: the loop that applies the journal in arrival order.
- ``ownership``: who answers a conversation (bot, human, paused).
"""
