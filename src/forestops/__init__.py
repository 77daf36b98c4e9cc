"""forestops: an MLOps platform for forest cover type classification (UCI Covertype).

Importing forestops sets `OMP_WAIT_POLICY=PASSIVE` (unless the environment already chose one),
before scikit-learn or LightGBM can load their OpenMP runtimes, which read it once at load.
The default lets OpenMP threads spin at every barrier; on a 2-core machine shared with the
inference service, the UI and other jobs, a spinning thread starves the one it waits for: 20
rounds of the 255-leaf LightGBM took 173 s with 2 threads, 20 s with 1, and 12 s with 2 passive
threads (measured under load; see benchmarks/RESULTS.md, Training). Here, in the package itself,
because every entry point (the CLI, the scheduler's job children, the Airflow tasks, the
services) imports it before anything else of forestops: `forestops.cli` imports the model
candidates, and with them LightGBM, before `forestops.pipeline`.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
