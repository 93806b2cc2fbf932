"""The provider's own id of a call (Twilio's CallSid, the SIP Call-ID), next to ours.

Call ids are made by the server: a client that could choose one could end or
take over another caller's conversation. The id the telephony provider uses is
kept here, indexed, to match our calls with the provider's records (billing,
complaints), and is never used to find a live call.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("provider_call_id", sa.String(200)))
    op.create_index("ix_calls_provider_call_id", "calls", ["provider_call_id"])


def downgrade() -> None:
    op.drop_index("ix_calls_provider_call_id", "calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("provider_call_id")
