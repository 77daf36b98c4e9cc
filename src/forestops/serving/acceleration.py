"""Compile a served LightGBM model's forest here, when training shipped none for this platform.

The booster answers meanwhile. The compilation runs in a child process at idle priority with fewer
compilers than cores (`ForestCompiler(background=True)`), so the requests the booster is answering
keep their CPU; the library lands beside the model in the cache, and it serves only once
`compiled_forest.verified_forest` has seen it give the booster's answers: on `VERIFICATION_ROWS`
records the first time (~5 s of booster CPU for 1,200 trees, so the verdict is kept beside the
file), on `SAMPLE_ROWS` at later loads of the same verified file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from forestops.config import Settings
from forestops.serving.compiled_forest import (
    SAMPLE_ROWS,
    VERIFICATION_ROWS,
    CompileCancelled,
    ForestCompiler,
    ForestMismatch,
    library_name,
    verified_forest,
)
from forestops.serving.model_cache import write_json
from forestops.serving.predictor import lightgbm_booster
from forestops.serving.served_model import ServedModel, short


class ForestAccelerator:
    def __init__(
        self, settings: Settings, update: Callable[[ServedModel, dict[str, Any]], None]
    ) -> None:
        """`update(served, changes)` is called with the model compiled and what to change on it
        (a new predictor and runtime, or a note saying why the booster stays)."""
        self.settings = settings
        self._update = update
        self._compiler = ForestCompiler(
            settings.inference_compile_timeout_s, settings.inference_compiler, background=True
        )

    def start(self, served: ServedModel) -> None:
        """Compile `served` on a thread of its own, if it is a LightGBM model still answered by
        its booster and the compiled runtime is wanted."""
        if self.settings.inference_runtime == "auto" and served.runtime == "lightgbm":
            threading.Thread(
                target=self._accelerate, args=(served,), name="forest-compiler", daemon=True
            ).start()

    def cancel(self) -> None:
        self._compiler.cancel()

    def _accelerate(self, served: ServedModel) -> None:
        booster = lightgbm_booster(served.model)
        assert booster is not None  # runtime "lightgbm" says so
        model_text = booster.model_to_string()
        path = served.path / library_name(model_text)
        verified = path.with_suffix(".json")  # the verdict on this very file, once it exists
        rows = SAMPLE_ROWS if verified.is_file() and path.is_file() else VERIFICATION_ROWS
        try:
            if not path.is_file():
                verified.unlink(missing_ok=True)
                self._compiler.compile(model_text, path)
            predict, difference = verified_forest(
                path, served.model.encoder.encode_arrays, served.predict, rows
            )
        except CompileCancelled:
            return
        except ForestMismatch as error:
            self._update(served, {"runtime_note": f"the compiled forest's {error}"})
            return
        except Exception as error:
            # Unreadable, or not answering probabilities: the next load compiles it again.
            path.unlink(missing_ok=True)
            self._update(served, {"runtime_note": f"compiled forest failed: {short(error)}"})
            return
        if rows == VERIFICATION_ROWS:
            write_json(verified, {"max_difference": difference, "rows": rows})
        self._update(served, {"predict": predict, "runtime": "compiled", "runtime_note": None})
