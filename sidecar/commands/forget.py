"""Provides ``python -m sidecar forget``: erase a contact's or a conversation's content (LGPD/GDPR).

Works while the sidecar runs (SQLite's lock, or PostgreSQL's row locks, order the writes). The
erasure is one transaction (``state.erasure``), recorded in the audit trail without content; then
the old copies go too: on SQLite the filter's index is merged and free pages are given back, so
the erased text is not left in the file either; on PostgreSQL a plain VACUUM removes the old row
versions (``state.postgres.maintenance``).
"""

from __future__ import annotations

import getpass
import time

from sidecar.commands import Failed, Refused, open_state, parser, state_path

_UNITS = (("conversations", "conversation"), ("messages", "message"), ("deliveries", "delivery"),
          ("jobs", "job"), ("decisions", "decision"), ("outcomes", "outcome"), ("handoffs", "hand-off"))


def _plural(count: int, one: str) -> str:
    many = {"delivery": "deliveries"}.get(one, f"{one}s")
    return f"{count:,} {one if count == 1 else many}"


def main(command: str, argv: list[str]) -> str:
    from state import StateError
    from state.erasure import BadTarget, Target, forget

    args_parser = parser(command, "Erase a contact's (or one conversation's) messages, payloads and history; "
                                  "counts and the audit record stay.")
    args_parser.add_argument("--contact-id", type=int, help="the Chatwoot contact to forget (all conversations)")
    args_parser.add_argument("--conversation-id", type=int, help="one conversation (its number in Chatwoot)")
    args_parser.add_argument("--account-id", type=int, help="the Chatwoot account (needed when the number is "
                                                            "used in several accounts)")
    args = args_parser.parse_args(argv)
    try:
        target = Target(contact_id=args.contact_id, conversation_id=args.conversation_id,
                        account_id=args.account_id)
    except BadTarget as exc:
        raise Refused(f"--{exc.key.replace('_', '-')}: {exc.reason}") from None
    path = state_path(args)
    db = open_state(path, migrate=False)
    try:
        try:
            erasure, _ = db.erase(lambda tx: forget(tx, target, actor=f"cli:{getpass.getuser()}", now=time.time()),
                                  clear_wal=False)
        except BadTarget as exc:
            raise Refused(f"--{exc.key.replace('_', '-')}: {exc.reason}") from None
        # The index's old segments and the freed pages may still hold pieces of the text: merge and
        # give back now (short steps; a running sidecar's writes go on between them).
        while db.erase(lambda tx: tx.search.merge_step(-256) if tx.search else False, clear_wal=False)[0]:
            pass
        while db.give_back(256):
            pass
        db.clear_wal()
    except StateError as exc:
        raise Failed(f"the state could not be written: {exc}") from None
    finally:
        db.close()
    if erasure.nothing:
        return f"nothing stored for {erasure.target}; the request is recorded in the audit trail"
    counts = erasure.counts()
    parts = [_plural(counts[key], one) for key, one in _UNITS if counts[key]]
    closed = []
    if erasure.cancelled_jobs:
        closed.append(f"{_plural(erasure.cancelled_jobs, 'open job')} cancelled")
    if erasure.discarded_dead_letters:
        closed.append(f"{_plural(erasure.discarded_dead_letters, 'dead letter')} discarded")
    tail = f" ({', '.join(closed)})" if closed else ""
    return f"forgot {erasure.target}: {', '.join(parts)}{tail}; recorded in the audit trail"
