"""A logged forestops model loads where forestops is not installed, from its own requirements.

The model carries the few forestops modules unpickling it imports (its `code`), and its
requirements pin the libraries. So a fresh virtual environment built from
`mlflow.pyfunc.get_model_dependencies` alone (uv, from its cache or PyPI) loads it and gives the
same answers as this process does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from forestops import contract
from forestops.config import Settings
from forestops.modeling.package import PROBABILITY_COLUMNS
from support.champion import log_candidate, read_rows, tiny_pipeline, version_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
UV = Path(sys.executable).with_name("uv")  # the Makefile's pinned uv, in .venv


def test_the_logged_model_loads_and_answers_alike_without_forestops(
    settings: Settings, dataset_path: Path, tmp_path: Path
) -> None:
    frame = read_rows(dataset_path, 2000)
    _, version = log_candidate(settings, tiny_pipeline(frame), 0.5)
    assert version is not None
    model_dir = version_files(settings, version)  # the local artifact store's folder
    assert (model_dir / "code/forestops/modeling/package.py").is_file()
    records = read_rows(dataset_path, 2100).iloc[2000:][list(contract.FEATURE_NAMES)]
    records.to_json(tmp_path / "records.json", orient="records")
    here = mlflow.pyfunc.load_model(str(model_dir)).predict(records)

    requirements = mlflow.pyfunc.get_model_dependencies(str(model_dir))
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin/python"
    subprocess.run(
        [str(UV), "pip", "install", "--python", str(python), "-r", requirements],
        check=True,
        capture_output=True,
    )
    script = (
        "import json, sys, importlib.util, mlflow, pandas as pd\n"
        "assert importlib.util.find_spec('forestops') is None, 'forestops is installed here'\n"
        f"model = mlflow.pyfunc.load_model({str(model_dir)!r})\n"
        f"records = pd.read_json({str(tmp_path / 'records.json')!r}, orient='records')\n"
        "print(model.predict(records).to_json(orient='records', double_precision=15))\n"
    )
    done = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row[contract.LABEL] for row in there] == here[contract.LABEL].tolist()
    probabilities = np.array([[row[c] for c in PROBABILITY_COLUMNS] for row in there])
    np.testing.assert_allclose(
        probabilities, here[list(PROBABILITY_COLUMNS)].to_numpy(), atol=1e-12
    )
