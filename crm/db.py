"""Transactions for services that write.

On SQLite a write transaction is IMMEDIATE: it takes the write lock at BEGIN, so two writers queue on
the busy timeout instead of failing half-way with "database is locked" when a read turns into a write.
"""

from __future__ import annotations

import sqlite3
from contextlib import asynccontextmanager
from typing import AsyncIterator

from piccolo.engine.sqlite import TransactionType
from piccolo.querystring import QueryString
from piccolo.table import Table

from crm.tables import User


class DatabaseBusy(RuntimeError):
    """Another process held the database's write lock for longer than the busy timeout."""


async def lock_row(table: type[Table], row_id: int) -> None:
    """Lock one row until the transaction ends, so that concurrent changes to it queue instead of
    overwriting each other. On SQLite the IMMEDIATE transaction already serialises writers."""
    engine = table._meta.db
    if engine.engine_type == "postgres":
        await engine.run_querystring(
            QueryString(f'SELECT id FROM "{table._meta.tablename}" WHERE id = {{}} FOR UPDATE', row_id)
        )


@asynccontextmanager
async def atomic() -> AsyncIterator[None]:
    """``async with atomic():`` runs the enclosed queries in one write transaction."""
    engine = User._meta.db
    if engine.engine_type != "sqlite":
        async with engine.transaction():
            yield
        return
    transaction = engine.transaction(transaction_type=TransactionType.immediate)
    try:
        await transaction.__aenter__()
    except sqlite3.OperationalError as error:
        # Piccolo leaves the connection (and its thread) open when BEGIN fails: close it, or the
        # process could not exit.
        connection = getattr(transaction, "connection", None)
        if connection is not None:
            await connection.close()
        if "locked" in str(error) or "busy" in str(error):
            raise DatabaseBusy(
                "the database is busy: another process (an import?) is writing; try again when it ends"
            ) from None
        raise
    try:
        yield
    except BaseException as error:
        await transaction.__aexit__(type(error), error, error.__traceback__)
        raise
    else:
        await transaction.__aexit__(None, None, None)
