"""The database tables, as SQLAlchemy Core metadata.

The schema is created and upgraded by the Alembic migrations in
`ivr/storage/migrations` when the storage is opened; these tables describe the
newest revision and must match it (a test compares them). The migrations'
env.py reads `metadata` from here for autogenerate.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

calls = sa.Table(
    "calls",
    metadata,
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
    sa.Column("provider_call_id", sa.String(200)),
    sa.Index("ix_calls_provider_call_id", "provider_call_id"),
)

utterances = sa.Table(
    "utterances",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.call_id"), nullable=False, index=True),
    sa.Column("speaker", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("start", sa.Float, nullable=False),
    sa.Column("end", sa.Float, nullable=False),
    sa.Column("asr_confidence", sa.Float),
    sa.Column("intent", sa.String(100)),
    sa.Column("intent_confidence", sa.Float),
    sa.Column("meta", sa.Text, nullable=False, default="{}"),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("tenant", sa.String(32), primary_key=True),
    sa.Column("customer_number", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("name_key", sa.String(200), nullable=False),  # _name_key(name): what lookups compare
    sa.Column("postcode", sa.String(16), nullable=False),
    sa.Column("postcode_key", sa.String(16), nullable=False),  # _postcode_key(postcode)
    sa.Column("street", sa.String(200), nullable=False),
    sa.Column("city", sa.String(100), nullable=False),
    sa.Column("phone", sa.String(32)),
    sa.Index("ix_customers_name", "tenant", "name_key", "postcode_key"),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(32), nullable=False),
    sa.Column("order_number", sa.String(16), nullable=False),
    sa.Column("customer_number", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("call_id", sa.String(64)),
    sa.Column("delivery_address", sa.Text, nullable=False),
    sa.UniqueConstraint("tenant", "order_number", name="uq_orders_tenant_number"),
    sa.Index("ix_orders_customer", "tenant", "customer_number"),
)

order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price_cents", sa.Integer, nullable=False),
    sa.CheckConstraint("quantity > 0", name="ck_order_lines_quantity"),
    sa.CheckConstraint("unit_price_cents >= 0", name="ck_order_lines_price"),
    sa.Index("ix_order_lines_order_id", "order_id"),
)

tickets = sa.Table(
    "tickets",
    metadata,
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

callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(32), nullable=False),
    sa.Column("number", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("call_id", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Index("ix_callbacks_tenant", "tenant", "created_at"),
)

handoffs = sa.Table(
    "handoffs",
    metadata,
    sa.Column("handoff_id", sa.String(64), primary_key=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("tenant", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("package", sa.JSON, nullable=False),
    sa.Index("ix_handoffs_call_id", "call_id"),
)

wrapups = sa.Table(
    "wrapups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("tenant", sa.String(32), nullable=False),
    sa.Column("agent", sa.String(64), nullable=False),
    sa.Column("disposition", sa.String(64), nullable=False),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("handoff_id", sa.String(64)),
    sa.Index("ix_wrapups_call_id", "call_id", "created_at"),
    sa.Index("ix_wrapups_tenant", "tenant", "created_at"),
)

call_events = sa.Table(
    "call_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("tenant", sa.String(32), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_call_events_call", "call_id", "ts"),
    sa.Index("ix_call_events_tenant", "tenant", "ts"),
)
