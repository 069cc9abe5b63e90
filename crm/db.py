"""Transactions for services that write.

On SQLite a write transaction is IMMEDIATE: it takes the write lock at BEGIN, so two writers queue on
the busy timeout instead of failing half-way with "database is locked" when a read turns into a write.
"""

from __future__ import annotations

from piccolo.engine.sqlite import TransactionType

from crm.tables import User


def atomic():
    """``async with atomic():`` runs the enclosed queries in one write transaction."""
    engine = User._meta.db
    if engine.engine_type == "sqlite":
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()
