"""Audit databases for the tests: settings with real keys, clearing between tests, raw reads."""

from __future__ import annotations

import json

from sqlalchemy import delete, select, text

from cds_hooks.audit.schema import metadata
from cds_hooks.audit.sealing import new_key

KEYS = {"test-k1": new_key()}
PSEUDONYM_KEY = new_key()


def audit_settings(database_url: str, var_dir, keys: dict[str, str] | None = None, key_id: str | None = None) -> dict:
    """Config keyword arguments for an audit database with explicit keys."""
    keys = keys or KEYS
    return {
        "var_dir": var_dir,
        "database_url": database_url,
        "audit_keys": keys,
        "audit_key_id": key_id or next(iter(keys)),
        "audit_pseudonym_key": PSEUDONYM_KEY,
    }


def audit_env(database_url: str, var_dir, keys: dict[str, str] | None = None) -> dict[str, str]:
    """The same settings as CDS_* environment variables (for subprocesses)."""
    keys = keys or KEYS
    return {
        "CDS_VAR_DIR": str(var_dir),
        "CDS_DATABASE_URL": database_url,
        "CDS_AUDIT_KEYS": json.dumps(keys),
        "CDS_AUDIT_KEY_ID": next(iter(keys)),
        "CDS_AUDIT_PSEUDONYM_KEY": PSEUDONYM_KEY,
    }


def clear(engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))


def rows(engine, table) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(table)).mappings()]


def raw_dump(engine) -> bytes:
    """Every value of every audit table, as bytes: for checking what is stored in the clear."""
    out = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                for value in row:
                    out.append(bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode())
    return b"\n".join(out)
