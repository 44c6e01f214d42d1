"""Storage: SQLAlchemy Core tables, Alembic migrations, and the content-addressed blob store."""

from lockgate.store._blobs import BlobRef, BlobStore, sha256_file
from lockgate.store._engine import Store, create_engine
from lockgate.store._tables import metadata

__all__ = ["BlobRef", "BlobStore", "Store", "create_engine", "metadata", "sha256_file"]
