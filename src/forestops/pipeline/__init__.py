"""Pipeline steps (ingest, validate, train, evaluate, promote): plain functions every orchestrator calls.

Importing this package sets `OMP_WAIT_POLICY=PASSIVE` (unless the environment already chose one)
before scikit-learn or LightGBM can load their OpenMP runtimes, which read it once at load. The
default lets OpenMP threads spin at every barrier; on a 2-core machine shared with the inference
service, the UI and other jobs, a spinning thread starves the one it waits for: 20 rounds of the
255-leaf LightGBM took 173 s with 2 threads, 20 s with 1, and 12 s with 2 passive threads
(measured under load; see benchmarks/RESULTS.md, Training). Batch jobs import the pipeline before
any model library, so this covers `forestops train/run`, the scheduler's jobs and Airflow tasks.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
