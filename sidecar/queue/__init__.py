"""Provides the durable work queue's consumer: claim, route, ask the crew, hand over the answer.

- ``worker``: claims due jobs and runs each through the crew step and the reply poster.
- ``routing``: local rules and the decision engine.
- ``retry``: backoff with full jitter and ``Retry-After``.
- ``pacing``: how background work yields to webhook acknowledgements under load.
"""
