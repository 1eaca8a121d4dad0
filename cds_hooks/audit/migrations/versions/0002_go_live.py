"""Go-live controls: the mode (live, shadow, off) and site of each call; the per-site switch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Calls recorded before this revision were all answered live.
    with op.batch_alter_table("audit_call") as batch:
        batch.add_column(sa.Column("mode", sa.String(8), nullable=False, server_default="live"))
        batch.add_column(sa.Column("site", sa.String(200)))
    op.create_table(
        "site_switch",
        sa.Column("site", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(300)),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("site", name="pk_site_switch"),
    )


def downgrade() -> None:
    op.drop_table("site_switch")
    with op.batch_alter_table("audit_call") as batch:
        batch.drop_column("site")
        batch.drop_column("mode")
