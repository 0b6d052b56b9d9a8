"""Alembic migrations of the smsagent schema."""
