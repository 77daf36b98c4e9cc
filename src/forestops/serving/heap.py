"""Keep the garbage collector's full passes off the request path of a replica.

A loaded replica holds ~350,000 long-lived Python objects (MLflow, pandas, scikit-learn, the
model); a full (generation 2) collection walks every one of them: 234 ms measured on a
2,240-tree champion, with every request on the event loop waiting. Once a model is in place the
heap is collected and what survives frozen (`gc.freeze`, as CPython's docs suggest for long-lived
servers): later full passes walk only what was allocated since (0.4 ms measured). The next swap
unfreezes first, so a replaced model's reference cycles are collected then; that one pass costs
the 234 ms once per model change.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()


def settle() -> None:
    """Collect everything, then freeze what is left (after a model swap)."""
    with _lock:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
