"""The audit database's tables (SQLAlchemy Core); the Alembic migrations create exactly these.

Da Vinci CRD ("Auditing"): both sides keep a record of every hook call and response. Columns in
plain text hold what reports need and nothing that identifies a patient; everything else (the
request context, the full response, evidence references, free-text comments) is in `sealed`,
encrypted by `sealing.Sealer` under the key named in `key_id`. Times are UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per call to POST /cds-services/{id}, successful or not.
audit_call = Table(
    "audit_call",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("received_at", DateTime, nullable=False),
    Column("service_id", String(100), nullable=False),
    Column("hook", String(64)),
    Column("hook_instance", String(200), index=True),
    Column("user_ref", String(200)),
    Column("patient_pseudonym", String(64), index=True),
    Column("status", Integer, nullable=False),
    Column("error_code", String(64)),
    Column("error_class", String(100)),
    Column("duration_ms", Float, nullable=False),
    Column("timings", JSON),
    Column("data_origin", String(16)),
    Column("unavailable_sources", JSON),
    Column("card_count", Integer, nullable=False),
    Column("key_id", String(64)),
    Column("sealed", LargeBinary),
    # Go-live controls (audit/go_live.py): live, shadow (evaluated, no cards returned) or off; and the site.
    Column("mode", String(8), nullable=False, server_default="live"),
    Column("site", String(200)),
    Index(None, "received_at", "service_id"),
)

# One row per card returned.
audit_card = Table(
    "audit_card",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("call_id", String(36), ForeignKey("audit_call.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("indicator", String(16), nullable=False),
    Column("profile", String(100)),
    Column("profile_version", String(50)),
    Column("payer_matched", Boolean),
    Column("order_codes", JSON),
    Column("levels", JSON),
    Column("required_unmet", Integer),
)

# One row per suggestion on a card.
audit_suggestion = Table(
    "audit_suggestion",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("card_uuid", String(36), ForeignKey("audit_card.uuid", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("label", String(300), nullable=False),
)

# One row per criterion result on a card (a per-level criterion has one row per level).
audit_criterion = Table(
    "audit_criterion",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(36), ForeignKey("audit_card.uuid", ondelete="CASCADE"), nullable=False, index=True),
    Column("criterion", String(100), nullable=False),
    Column("level", String(16)),
    Column("status", String(20), nullable=False),
    Column("required", Boolean, nullable=False),
)

# CDS Hooks 2.0 "Feedback": one row per entry. `card_uuid` is what the client sent; `call_id` is set
# when the card is one this service returned (matched), else the entry is kept unmatched.
feedback = Table(
    "feedback",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("received_at", DateTime, nullable=False, index=True),
    Column("service_id", String(100), nullable=False),
    Column("card_uuid", String(36), nullable=False, index=True),
    Column("call_id", String(36), ForeignKey("audit_call.id", ondelete="SET NULL")),
    Column("matched", Boolean, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_at", DateTime, nullable=False),
    Column("reason_system", String(300)),
    Column("reason_code", String(100)),
    Column("reason_display", String(300)),
    Column("digest", String(64), nullable=False, unique=True),
    Column("key_id", String(64)),
    Column("sealed", LargeBinary),
)

feedback_suggestion = Table(
    "feedback_suggestion",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("feedback_id", String(36), ForeignKey("feedback.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("suggestion_uuid", String(100), nullable=False, index=True),
    Column("matched", Boolean, nullable=False),
)

# Every read of audit content through the project's commands (report, show, export, purge, rekey).
access_log = Table(
    "access_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("command", String(50), nullable=False),
    Column("detail", String(500), nullable=False),
    Column("records", Integer, nullable=False),
)

# Caller JWT ids seen (CDS Hooks 2.0 "Trusting CDS Clients": reject a replayed jti), shared by replicas.
replay_jti = Table(
    "replay_jti",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)

# The per-site switch (audit/go_live.py): a site's mode, read by every process of every replica.
site_switch = Table(
    "site_switch",
    metadata,
    Column("site", String(200), primary_key=True),
    Column("mode", String(8), nullable=False),
    Column("reason", String(300)),
    Column("changed_at", DateTime, nullable=False),
    Column("changed_by", String(200), nullable=False),
)
