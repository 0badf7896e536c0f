"""The partsbin registry: a REST service (FastAPI) over a database (SQLAlchemy; SQLite
or PostgreSQL) and blob storage (a local folder or S3). Needs the ``server`` extra."""

from partsbin.parts.extras import require_extra

require_extra(
    "server",
    "the partsbin registry",
    "fastapi",
    "uvicorn",
    "python_multipart",
    "sqlalchemy",
    "alembic",
    "pydantic_settings",
    "jinja2",
    "prometheus_client",
)
