"""job lanes: lease jobs by kind

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Each worker lane asks for the due jobs of its own kinds, oldest first.
    op.create_index("ix_jobs_lane_due", "jobs", ["kind", "status", "run_at"])
    op.drop_index("ix_jobs_due", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_due", "jobs", ["status", "run_at"])
    op.drop_index("ix_jobs_lane_due", table_name="jobs")
