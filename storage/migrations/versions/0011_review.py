"""full-text search over message bodies, the model's exact input and output per agent run

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 18:30:00

SQLite keeps an FTS5 index beside `messages` (external content: the bodies are not stored
twice), kept current by triggers; PostgreSQL a GIN index over the bodies' `simple` tsvector.
Both split words the same way and neither stems, so a search finds the same texts on both.
A later migration that copies `messages` (Alembic's batch mode on SQLite) must rebuild the
FTS5 index, which refers to the rows by rowid.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_FTS = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    "body, content='messages', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, body) VALUES (new.rowid, new.body); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.rowid, old.body); "
    "END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.rowid, old.body); "
    "INSERT INTO messages_fts(rowid, body) VALUES (new.rowid, new.body); END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
)


def upgrade() -> None:
    op.create_index("ix_messages_created", "messages", ["created_at", "id"])
    op.create_index("ix_conversations_last_message", "conversations", ["last_message_at", "id"])
    with op.batch_alter_table("agent_runs") as batch:
        batch.add_column(sa.Column("exchange", sa.JSON(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute(
            "CREATE INDEX ix_messages_body_fts ON messages USING GIN (to_tsvector('simple', body))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS messages_fts_{name}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_body_fts")
    with op.batch_alter_table("agent_runs") as batch:
        batch.drop_column("exchange")
    op.drop_index("ix_conversations_last_message", "conversations")
    op.drop_index("ix_messages_created", "messages")
