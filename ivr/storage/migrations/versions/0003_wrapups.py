"""Agents' wrap-ups: the disposition code and notes an agent records after a call.

Several per call are allowed (a transferred call is wrapped up by each agent),
so the key is a plain row id; `call_id` and `tenant` are indexed for the call
view and for per-tenant disposition reports.

Revision ID: 0003
Revises: 0002
Create Date: 2024-07-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wrapups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("disposition", sa.String(64), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("handoff_id", sa.String(64)),
    )
    op.create_index("ix_wrapups_call_id", "wrapups", ["call_id", "created_at"])
    op.create_index("ix_wrapups_tenant", "wrapups", ["tenant", "created_at"])


def downgrade() -> None:
    op.drop_table("wrapups")
