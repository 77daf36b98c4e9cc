"""forestops: an MLOps platform for forest cover type classification (UCI Covertype)."""

__version__ = "0.1.0"
