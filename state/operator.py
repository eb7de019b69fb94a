"""Provides the operators' writes (console, admin API): each one changes the state and records
who did it, in one transaction."""

from __future__ import annotations

from state.tx import Tx
from state.vocabulary import BOT, PAUSED


def retry_dead_letter(tx: Tx, job_id: int, actor: str, now: float) -> bool:
    """Puts a dead job back in the queue with fresh attempts."""
    changed = tx.jobs.retry_dead(job_id, now)
    if changed:
        tx.audit.operator_action(actor, "retry_dead_letter", f"job:{job_id}", "", now)
    return changed


def discard_dead_letter(tx: Tx, job_id: int, actor: str, now: float) -> bool:
    changed = tx.jobs.discard_dead(job_id, now)
    if changed:
        tx.audit.operator_action(actor, "discard_dead_letter", f"job:{job_id}", "", now)
    return changed


def set_bot_ownership(tx: Tx, account_id: int, conversation_id: int, *, bot: bool, actor: str, now: float) -> bool:
    """Pauses the bot on a conversation, or gives the conversation back to it."""
    if tx.conversations.get(account_id, conversation_id) is None:
        return False
    owner, reason = (BOT, f"given back by {actor}") if bot else (PAUSED, f"paused by {actor}")
    tx.conversations.set_owner(account_id, conversation_id, owner, reason, now)
    if not bot:
        tx.jobs.cancel_pending(account_id, conversation_id, "bot paused by operator", now)
    tx.audit.operator_action(actor, "give_back" if bot else "pause", f"conversation:{account_id}/{conversation_id}",
                             "", now)
    return True
