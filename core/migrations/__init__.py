"""Alembic migrations of the Conveyor schema."""
