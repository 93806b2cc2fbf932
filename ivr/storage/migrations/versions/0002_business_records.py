"""Customers, orders with their lines, tickets, callback requests, handoffs and the call-event log.

Business numbers (order, ticket, customer) are unique per tenant, not
globally: each company has its own number ranges. Prices are integer cents so
SQLite and PostgreSQL store them exactly alike.

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("tenant", sa.String(32), primary_key=True),
        sa.Column("customer_number", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_key", sa.String(200), nullable=False),
        sa.Column("postcode", sa.String(16), nullable=False),
        sa.Column("postcode_key", sa.String(16), nullable=False),
        sa.Column("street", sa.String(200), nullable=False),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("phone", sa.String(32)),
    )
    op.create_index("ix_customers_name", "customers", ["tenant", "name_key", "postcode_key"])

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(32), nullable=False),
        sa.Column("order_number", sa.String(16), nullable=False),
        sa.Column("customer_number", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("call_id", sa.String(64)),
        sa.Column("delivery_address", sa.Text, nullable=False),
        sa.UniqueConstraint("tenant", "order_number", name="uq_orders_tenant_number"),
    )
    op.create_index("ix_orders_customer", "orders", ["tenant", "customer_number"])

    op.create_table(
        "order_lines",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price_cents", sa.Integer, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_order_lines_quantity"),
        sa.CheckConstraint("unit_price_cents >= 0", name="ck_order_lines_price"),
    )
    op.create_index("ix_order_lines_order_id", "order_lines", ["order_id"])

    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(32), nullable=False),
        sa.Column("ticket_number", sa.String(16), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("callback_number", sa.String(32)),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("call_id", sa.String(64)),
        sa.Column("caller", sa.String(32)),
        sa.UniqueConstraint("tenant", "ticket_number", name="uq_tickets_tenant_number"),
    )

    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(32), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("call_id", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_callbacks_tenant", "callbacks", ["tenant", "created_at"])

    op.create_table(
        "handoffs",
        sa.Column("handoff_id", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("package", sa.JSON, nullable=False),
    )
    op.create_index("ix_handoffs_call_id", "handoffs", ["call_id"])

    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(32), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_call_events_call", "call_events", ["call_id", "ts"])
    op.create_index("ix_call_events_tenant", "call_events", ["tenant", "ts"])


def downgrade() -> None:
    for table in ("call_events", "handoffs", "callbacks", "tickets", "order_lines", "orders", "customers"):
        op.drop_table(table)
