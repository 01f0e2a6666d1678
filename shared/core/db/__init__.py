"""The database, one concern a module:

    statements.py   the statement registry: each lifecycle step's SQL, loaded once, run by name
    connection.py   a connection (direct, or through the Cloud SQL connector), and what a
                    refusal or a dropped connection means (DatabaseUnavailable, a 503)
    session.py      a session over one connection: named statements, transactions, the
                    transaction-mode pooler's way, a connection broken in flight
    pool.py         a few sessions per process, each lent for a statement

The names the rest of the tree uses are here, so `from shared.core.db import Session` reads
the same whichever module holds it.
"""

from shared.core.db.connection import connect, refusal_reason, sqlstate
from shared.core.db.pool import Pool, PoolExhausted
from shared.core.db.session import Session, StatementTimeout, open_session
from shared.core.db.statements import SQL_DIR, STATEMENTS, add_statements

__all__ = [
    "SQL_DIR",
    "STATEMENTS",
    "Pool",
    "PoolExhausted",
    "Session",
    "StatementTimeout",
    "add_statements",
    "connect",
    "open_session",
    "refusal_reason",
    "sqlstate",
]
