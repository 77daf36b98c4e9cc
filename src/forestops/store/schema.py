"""Database schema (SQLAlchemy Core). Table names are part of the contract (DESIGN.md, Storage).

Alembic migrations under `store/migrations` are the only way the schema changes; this module is
what they and the queries are written against.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

from forestops import contract

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY, so big keys fall back to Integer there.
_BigId = BigInteger().with_variant(Integer(), "sqlite")
_HexDigest = String(32).with_variant(String(32, collation="C"), "postgresql")

ingestion_batches = Table(
    "ingestion_batches",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("source", String(512), nullable=False),
    Column("group_number", Integer, nullable=False),
    Column("batch_number", Integer, nullable=True),
    Column("fetched_at", DateTime(timezone=True), nullable=False, index=True),
    Column("status", String(32), nullable=False),
    Column("received", Integer, nullable=False, default=0),
    Column("inserted", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("quarantined", Integer, nullable=False, default=0),
    Column("payload_sha256", String(64), nullable=True, index=True),
    Column("payload_uri", String(1024), nullable=True),
    Column("replay_of", _BigId, ForeignKey("ingestion_batches.id"), nullable=True),
    Column("message", Text, nullable=True),
    # Running figures of a harvest (pipeline.harvest) as of this sample; NULL for single fetches.
    Column("harvest_calls", Integer, nullable=True),  # samples of this batch taken by the run
    Column("distinct_rows", Integer, nullable=True),  # distinct valid rows among them
    Column("estimated_batch_size", Integer, nullable=True),  # capture-recapture; NULL: unknown
    Column("estimated_coverage", Float, nullable=True),  # distinct_rows / estimated_batch_size
)

forest_cover_samples = Table(
    "forest_cover_samples",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    # Hex digits: bytewise comparison ("C") is all the unique index needs, and cheaper.
    Column("content_hash", _HexDigest, nullable=False, unique=True),
    # On PostgreSQL this key is enforced per statement by triggers, not per row (migration 0002).
    Column("batch_id", _BigId, ForeignKey("ingestion_batches.id"), nullable=False, index=True),
    *(Column(name, Integer, nullable=False) for name in contract.NUMERIC_NAMES),
    Column("wilderness_area", String(16), nullable=False),
    Column("soil_type", String(8), nullable=False),
    Column(contract.LABEL, SmallInteger, nullable=False),
)

quarantined_rows = Table(
    "quarantined_rows",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("batch_id", _BigId, ForeignKey("ingestion_batches.id"), nullable=False, index=True),
    Column("row_number", Integer, nullable=False),
    Column("raw", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),
)

prediction_log = Table(
    "prediction_log",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("logged_at", DateTime(timezone=True), nullable=False, index=True),
    Column("request_id", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("features", JSON, nullable=False),
    Column("prediction", SmallInteger, nullable=False),
    Column("probability", Float, nullable=False),
    Column("latency_ms", Float, nullable=False),
)

# One row per model a training job signed (modeling.integrity): the ledger of what training
# produced, independent of the registry's tags; model_version is set once the run is registered.
model_signatures = Table(
    "model_signatures",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model_name", String(256), nullable=False),
    Column("run_id", String(64), nullable=False, index=True),
    Column("model_version", String(64), nullable=True),
    Column("manifest_digest", String(64), nullable=False),  # SHA-256 of the files' manifest
    Column("signature", String(256), nullable=False),  # the signature tag value
)

monitoring_reports = Table(
    "monitoring_reports",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("model_version", String(64), nullable=True),
    Column("rows", JSON, nullable=False),  # {"reference": n, "served": n, "ingested": n}
    Column("feature_drift", JSON, nullable=False),  # {"served"|"ingested": {feature: psi}}
    Column("prediction_shift", Float, nullable=True),  # PSI of predicted classes, served
    Column("live_accuracy", Float, nullable=True),  # champion on newly ingested labelled rows
    Column("reference_accuracy", Float, nullable=True),  # champion's evaluation accuracy
    Column("alert", Boolean, nullable=False),
    Column("reasons", JSON, nullable=False),  # list of sentences
    # {"rows", "features": {feature: {training, served, shift}}, "total_shift", "note"}: what
    # the champion relies on, training vs served (pipeline.reliance); None in older reports
    Column("reliance", JSON, nullable=True),
)

model_audit = Table(
    "model_audit",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("action", String(32), nullable=False),  # promote | rollback | train
    Column("model_name", String(256), nullable=False),
    Column("from_version", String(64), nullable=True),  # the champion before (None: there was none)
    Column("to_version", String(64), nullable=True),  # the version acted on (train: the new one)
    Column("outcome", String(32), nullable=False),  # done | refused | rejected | skipped
    Column("actor", String(256), nullable=False),
    Column("reason", Text, nullable=True),
    Column("detail", Text, nullable=True),  # what happened, in a sentence (why it was refused)
)
