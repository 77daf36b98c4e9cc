"""`FORESTOPS_HOME/models/latest_model.json`: the last training outcome for tools without MLflow.

The original design's status file. Written atomically (temp file + rename) at the end of every
training job that trained, so a reader never sees half a file, whichever process it runs in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forestops.config import Settings
from forestops.files import write_atomically

FILE_NAME = "latest_model.json"


def latest_model_path(settings: Settings) -> Path:
    return settings.models_dir / FILE_NAME


def write_latest_model(settings: Settings, payload: dict[str, Any]) -> Path:
    path = latest_model_path(settings)
    write_atomically(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_latest_model(settings: Settings) -> dict[str, Any] | None:
    path = latest_model_path(settings)
    if not path.exists():
        return None
    payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return payload
