"""Prune the webhook outbox: a delivery given up on stays, with its last error, for an
operator to read, until RETENTION_DAYS have passed (a sent one is deleted when it is sent)."""

from __future__ import annotations

from shared.core.db import Session


def prune_outbox(session: Session, retention_days: int) -> int:
    """How many deliveries were deleted."""
    return session.row("outbox_prune", retention_days=retention_days)["pruned"]
