"""Calls and transcripts, exactly as `metadata.create_all` made them before migrations existed.

Databases from that time are stamped with this revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(32), nullable=False),
        sa.Column("company", sa.String(200), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("dialled", sa.String(32)),
        sa.Column("caller", sa.String(32)),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("end_reason", sa.String(64)),
    )
    op.create_table(
        "utterances",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.call_id"), nullable=False),
        sa.Column("speaker", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("start", sa.Float, nullable=False),
        sa.Column("end", sa.Float, nullable=False),
        sa.Column("asr_confidence", sa.Float),
        sa.Column("intent", sa.String(100)),
        sa.Column("intent_confidence", sa.Float),
        sa.Column("meta", sa.Text, nullable=False),
    )
    op.create_index("ix_utterances_call_id", "utterances", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_utterances_call_id", "utterances")
    op.drop_table("utterances")
    op.drop_table("calls")
