"""Audit trail: calls, cards, suggestions, criteria, feedback, access log, replay ids.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_call",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("hook", sa.String(64)),
        sa.Column("hook_instance", sa.String(200)),
        sa.Column("user_ref", sa.String(200)),
        sa.Column("patient_pseudonym", sa.String(64)),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_class", sa.String(100)),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("timings", sa.JSON()),
        sa.Column("data_origin", sa.String(16)),
        sa.Column("unavailable_sources", sa.JSON()),
        sa.Column("card_count", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("sealed", sa.LargeBinary()),
        sa.PrimaryKeyConstraint("id", name="pk_audit_call"),
    )
    op.create_index("ix_audit_call_hook_instance", "audit_call", ["hook_instance"])
    op.create_index("ix_audit_call_patient_pseudonym", "audit_call", ["patient_pseudonym"])
    op.create_index("ix_audit_call_received_at_service_id", "audit_call", ["received_at", "service_id"])

    op.create_table(
        "audit_card",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("profile", sa.String(100)),
        sa.Column("profile_version", sa.String(50)),
        sa.Column("payer_matched", sa.Boolean()),
        sa.Column("order_codes", sa.JSON()),
        sa.Column("levels", sa.JSON()),
        sa.Column("required_unmet", sa.Integer()),
        sa.PrimaryKeyConstraint("uuid", name="pk_audit_card"),
        sa.ForeignKeyConstraint(
            ["call_id"], ["audit_call.id"], name="fk_audit_card_call_id_audit_call", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_audit_card_call_id", "audit_card", ["call_id"])

    op.create_table(
        "audit_suggestion",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("card_uuid", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(300), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name="pk_audit_suggestion"),
        sa.ForeignKeyConstraint(
            ["card_uuid"], ["audit_card.uuid"], name="fk_audit_suggestion_card_uuid_audit_card", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_audit_suggestion_card_uuid", "audit_suggestion", ["card_uuid"])

    op.create_table(
        "audit_criterion",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("card_uuid", sa.String(36), nullable=False),
        sa.Column("criterion", sa.String(100), nullable=False),
        sa.Column("level", sa.String(16)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_criterion"),
        sa.ForeignKeyConstraint(
            ["card_uuid"], ["audit_card.uuid"], name="fk_audit_criterion_card_uuid_audit_card", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_audit_criterion_card_uuid", "audit_criterion", ["card_uuid"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("card_uuid", sa.String(36), nullable=False),
        sa.Column("call_id", sa.String(36)),
        sa.Column("matched", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_at", sa.DateTime(), nullable=False),
        sa.Column("reason_system", sa.String(300)),
        sa.Column("reason_code", sa.String(100)),
        sa.Column("reason_display", sa.String(300)),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("sealed", sa.LargeBinary()),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.ForeignKeyConstraint(
            ["call_id"], ["audit_call.id"], name="fk_feedback_call_id_audit_call", ondelete="SET NULL"
        ),
        sa.UniqueConstraint("digest", name="uq_feedback_digest"),
    )
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])

    op.create_table(
        "feedback_suggestion",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("feedback_id", sa.String(36), nullable=False),
        sa.Column("suggestion_uuid", sa.String(100), nullable=False),
        sa.Column("matched", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback_suggestion"),
        sa.ForeignKeyConstraint(
            ["feedback_id"], ["feedback.id"], name="fk_feedback_suggestion_feedback_id_feedback", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_feedback_suggestion_feedback_id", "feedback_suggestion", ["feedback_id"])
    op.create_index("ix_feedback_suggestion_suggestion_uuid", "feedback_suggestion", ["suggestion_uuid"])

    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("command", sa.String(50), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
    )
    op.create_index("ix_access_log_at", "access_log", ["at"])

    op.create_table(
        "replay_jti",
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name="pk_replay_jti"),
    )
    op.create_index("ix_replay_jti_expires_at", "replay_jti", ["expires_at"])


def downgrade() -> None:
    for table in (
        "replay_jti",
        "access_log",
        "feedback_suggestion",
        "feedback",
        "audit_criterion",
        "audit_suggestion",
        "audit_card",
        "audit_call",
    ):
        op.drop_table(table)
