"""Alembic migrations of the registry database (``partsbin db upgrade`` applies them)."""
