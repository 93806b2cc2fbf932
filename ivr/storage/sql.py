"""SQL storage with SQLAlchemy Core (SQLite by default, PostgreSQL by URL).

Database calls are short and synchronous; they run in a worker thread so the
event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Optional

import sqlalchemy as sa

from ivr.storage.base import CallRecord, Storage, Utterance

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


class SqlStorage(Storage):
    def __init__(self, url: str):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, future=True)
        metadata.create_all(self.engine)

    async def _run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    def _execute(self, statement) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement)

    async def start_call(self, call: CallRecord) -> None:
        await self._run(self._execute, calls.insert().values(**call.__dict__))

    async def add_utterance(self, utterance: Utterance) -> None:
        values = dict(utterance.__dict__, meta=json.dumps(utterance.meta, default=str))
        await self._run(self._execute, utterances.insert().values(**values))

    async def end_call(self, call_id: str, ended_at: float, reason: str) -> None:
        statement = (
            calls.update()
            .where(calls.c.call_id == call_id, calls.c.ended_at.is_(None))
            .values(ended_at=ended_at, end_reason=reason)
        )
        await self._run(self._execute, statement)

    def _get_call(self, call_id: str) -> Optional[CallRecord]:
        with self.engine.connect() as conn:
            row = conn.execute(calls.select().where(calls.c.call_id == call_id)).mappings().first()
        return CallRecord(**row) if row else None

    async def get_call(self, call_id: str) -> Optional[CallRecord]:
        return await self._run(self._get_call, call_id)

    def _transcript(self, call_id: str) -> list[Utterance]:
        query = utterances.select().where(utterances.c.call_id == call_id).order_by(utterances.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Utterance(**{k: v for k, v in row.items() if k not in ("id", "meta")}, meta=json.loads(row["meta"]))
            for row in rows
        ]

    async def transcript(self, call_id: str) -> list[Utterance]:
        return await self._run(self._transcript, call_id)

    async def close(self) -> None:
        await self._run(self.engine.dispose)
