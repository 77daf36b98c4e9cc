"""Settings: every knob of forestops, read from the environment or `.env`, with embedded defaults.

The defaults give the embedded shape (SQLite, local MLflow, local artifact folder, all under
`FORESTOPS_HOME`); the full stack overrides them through the environment. A setting whose default
depends on the home (DATABASE_URL, MLFLOW_TRACKING_URI, ARTIFACT_STORE_URI) is stored as given in
a `configured_*` field (None: unset) and read through a computed property of the public name, so
setting only the home moves everything, on a copy with another home too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, computed_field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_CANDIDATES = ("logistic_regression", "svc", "random_forest", "extra_trees", "lightgbm")
# Settings derived from FORESTOPS_HOME when unset: public name -> the field holding what was given.
_CONFIGURED = {
    "database_url": "configured_database_url",
    "mlflow_tracking_uri": "configured_mlflow_tracking_uri",
    "artifact_store_uri": "configured_artifact_store_uri",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- where state lives -------------------------------------------------------------------
    forestops_home: Path = Field(
        Path(".forestops"),
        description="State folder: SQLite files, MLflow store, archive, model cache",
    )
    forestops_dataset: Path | None = Field(
        None,
        description="Course-format CSV(.gz) or UCI covtype.data(.gz); unset: download UCI once",
    )
    dataset_download_url: str = Field(
        "https://archive.ics.uci.edu/ml/machine-learning-databases/covtype/covtype.data.gz",
        description="Where the UCI Covertype data comes from when FORESTOPS_DATASET is unset",
    )
    configured_database_url: str | None = Field(
        None,
        validation_alias="database_url",
        description="SQLAlchemy URL; default sqlite:///<home>/forestops.db",
    )
    ui_database_url: str | None = Field(
        None,
        description="PostgreSQL: the URL the UI is given as its DATABASE_URL; `forestops db "
        "roles` makes its user a login that may only read",
    )
    inference_database_url: str | None = Field(
        None,
        description="PostgreSQL: the URL the inference service is given as its DATABASE_URL; "
        "`forestops db roles` makes its user a login that may only add to prediction_log",
    )
    configured_artifact_store_uri: str | None = Field(
        None,
        validation_alias="artifact_store_uri",
        description="Raw payload archive: a folder or s3://bucket/prefix; default <home>/artifacts",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint for MinIO or a test server")

    # --- the batch data source ---------------------------------------------------------------
    source_api_base_url: str = Field("", description="Course data API; unset: the built-in one")
    group_number: int = Field(
        1, ge=1, le=10, description="Course group number sent to the data API (1..10)"
    )
    source_timeout_s: float = Field(30.0, gt=0, description="Timeout of one data API call")
    source_retries: int = Field(
        12, ge=1, description="Most attempts per call (SOURCE_RETRY_BUDGET_S usually ends first)"
    )
    source_retry_budget_s: float = Field(
        120.0,
        gt=0,
        description="A failing call (connection error, timeout, 5xx, 429) is retried for this "
        "long: enough to span a restart of the source",
    )
    source_backoff_max_s: float = Field(
        30.0, gt=0, description="Longest wait between retries (exponential backoff from 0.5 s)"
    )
    data_api_port: int = Field(
        8081, description="Port of the built-in data API (`forestops data-api`, `up`, `run`)"
    )
    min_update_time_s: float = Field(300.0, ge=0, description="Built-in data API batch window")
    sample_fraction: float = Field(0.1, gt=0, le=1, description="Built-in data API share per call")
    data_api_fidelity: Literal["default", "course"] = Field(
        "default",
        description="Built-in data API: default (ten disjoint batches of every row) or course "
        "(the course's server answer for answer: one tenth of the data per group, group 10 is 500)",
    )

    # --- harvesting a batch (pipeline.harvest) ------------------------------------------------
    ingest_harvest: bool = Field(
        True,
        description="Scheduled ingestion (`up`, the Airflow data DAG, `run`) harvests each batch "
        "with repeated calls instead of taking one sample of it",
    )
    harvest_stop_new_share: float = Field(
        0.02, gt=0, lt=1, description="Stop once new rows fall under this share of recent samples"
    )
    harvest_window: int = Field(
        5, ge=1, description="Recent samples the new-row share is taken over"
    )
    harvest_time_budget_s: float | None = Field(
        None, gt=0, description="Longest harvest run; default 0.9 x MIN_UPDATE_TIME_S (the window)"
    )
    harvest_min_interval_s: float = Field(
        2.0, ge=0, description="Least time between two calls to the data API (politeness)"
    )

    # --- MLflow and the registry ---------------------------------------------------------------
    configured_mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias="mlflow_tracking_uri",
        description="Default sqlite:///<home>/mlflow.db",
    )
    mlflow_enable_model_registry: bool = Field(
        True, description="false: register nothing; serving takes the best run"
    )
    mlflow_experiment_name: str = Field(
        "forest-cover", description="MLflow experiment of the training jobs"
    )
    model_name: str = Field("forest-cover", description="Registered model name")
    champion_alias: str = Field("champion", description="Registry alias of the served model")
    model_retention_jobs: int = Field(
        10,
        ge=0,
        description="Training jobs whose candidates keep their model files; an older candidate's "
        "model is deleted after each job unless a registered version or the serving run uses it "
        "(0: keep every model)",
    )
    mlflow_url: str = Field(
        "http://127.0.0.1:5000", description="MLflow UI link shown by the web UI"
    )
    model_signing_key: SecretStr | None = Field(
        None,
        description="HMAC key (32+ characters) training signs model files with and every loader "
        "checks before unpickling; the same in training, inference and monitor. Unset: generated "
        "in <home>/model-signing.key with a local MLflow store, an error with a tracking server",
    )

    # --- training ----------------------------------------------------------------------------
    train_candidates: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_CANDIDATES,
        description="Comma-separated: logistic_regression, svc, random_forest, extra_trees, lightgbm",
    )
    train_min_rows: int = Field(
        500, ge=10, description="Fewer curated rows: training is skipped with a message"
    )
    train_eval_fraction: float = Field(
        0.1, gt=0, lt=0.9, description="Held-out share; 0.1 of ~300k rows is ~30k evaluation rows"
    )
    train_seed: int = Field(42, description="Seed of the subsamples and estimators")
    gate_min_rows: int = Field(
        200,
        ge=1,
        description="Fewer evaluation rows unseen by the champion: it stays (at 0.9 accuracy the "
        "standard error on 200 rows is 2 points)",
    )
    svc_max_rows: int = Field(10_000, ge=100, description="SVC is quadratic: bounded subsample")
    logreg_max_rows: int = Field(
        100_000, ge=100, description="Logistic regression stratified subsample"
    )
    random_forest_trees: int = Field(60, ge=1, description="Random forest size")
    random_forest_max_rows: int = Field(
        150_000, ge=100, description="Random forest stratified subsample"
    )
    extra_trees_trees: int = Field(100, ge=1, description="Extremely randomized trees' forest size")
    extra_trees_max_rows: int = Field(
        40_000,
        ge=100,
        description="Extra trees' stratified subsample: they win on a course group's ~30k rows, "
        "the boosting on more, and their size grows with the rows (~1.3 MB a tree at 30k)",
    )
    lightgbm_max_rounds: int = Field(1000, ge=1, description="Upper bound; early stopping decides")
    lightgbm_time_budget_s: float = Field(
        300.0, gt=0, description="LightGBM stops adding rounds after this long"
    )
    lightgbm_num_leaves: int = Field(255, ge=2, description="LightGBM leaves per tree")
    lightgbm_validation_fraction: float = Field(
        0.05, gt=0, lt=0.5, description="Early-stopping split carved from the training part"
    )
    lightgbm_early_stopping_rounds: int = Field(
        50, ge=1, description="Rounds without improvement before early stopping"
    )
    train_n_jobs: int = Field(2, ge=1, description="Threads for the tree models")
    train_compile_forest: bool = Field(
        True,
        description="Training compiles the best LightGBM candidate's forest and ships it with the "
        "model, so serving answers compiled from the first request (needs INFERENCE_COMPILER)",
    )

    # --- inference service -------------------------------------------------------------------
    inference_api_url: str = Field(
        "http://127.0.0.1:8000",
        description="Where the UI, `up` and the DAGs reach the inference API",
    )
    inference_reload_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated inference URLs that get POST /reload after a promotion; a "
        "host name with several addresses (a scaled compose service) means every one; "
        "unset: INFERENCE_API_URL",
    )
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="Comma-separated API keys; unset: the API is open"
    )
    admin_api_key: SecretStr | None = Field(
        None,
        description="Key for POST /reload when API_KEYS is set, and the operator's key for the "
        "operations API's actions (unset there: actions disabled)",
    )
    max_batch_rows: int = Field(
        10_000, ge=1, description="Most records per /predict request (more: 413)"
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest request body (more: 413)"
    )
    max_explain_rows: int = Field(
        500,
        ge=1,
        description="Most records per request with ?explain= (more: 413); TreeSHAP costs "
        "~3.5 ms of CPU per record and class on a 3,465-tree forest",
    )
    model_poll_interval_s: float = Field(60.0, ge=0, description="0 disables polling")
    model_startup_wait_s: float = Field(
        30.0, ge=0, description="Start-up wait for the tracking server before serving the cache"
    )
    inference_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Threads one large batch, or one request's explanations, is split across "
        "(each model call is single-threaded)",
    )
    inference_runtime: Literal["auto", "native"] = Field(
        "auto",
        description="auto: a LightGBM champion is compiled to native code (child process, cached) "
        "and served compiled once it gives the booster's answers; native: always the model's own "
        "predict",
    )
    inference_compiler: str = Field(
        "cc",
        description="C compiler for the compiled runtime, the TreeSHAP kernel and a forest's "
        "tree walk (without one the booster serves, LightGBM's pred_contrib explains, a "
        "forest's trees are asked one by one and cannot explain)",
    )
    inference_compile_timeout_s: float = Field(
        1800.0, gt=0, description="Longest compilation of one model (beyond: the booster stays)"
    )
    inference_header_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's headers (beyond: 408)"
    )
    inference_body_timeout_s: float = Field(
        60.0, gt=0, description="Seconds a client has to send the body after them (beyond: 408)"
    )
    inference_max_header_bytes: int = Field(
        65_536, ge=1024, description="Largest request line plus headers (more: 431)"
    )
    inference_keep_alive_s: int = Field(
        5, ge=1, description="An idle kept-alive connection is closed after this many seconds"
    )
    inference_max_connections: int = Field(
        1000, ge=1, description="Open connections the service takes (beyond: 503 at once)"
    )

    # --- monitoring --------------------------------------------------------------------------
    prediction_log_enabled: bool = Field(
        True, description="The inference service records every served record in prediction_log"
    )
    prediction_log_capacity: int = Field(
        100_000, ge=1, description="Records held in memory while the database lags; beyond: dropped"
    )
    monitor_interval_s: float = Field(3600.0, gt=0, description="Embedded scheduler's monitor job")
    monitor_window_s: float = Field(3600.0, gt=0, description="Served inputs the monitor compares")
    monitor_min_rows: int = Field(200, ge=1, description="Fewer rows in a sample: not judged")
    monitor_psi_threshold: float = Field(0.2, gt=0, description="PSI above this is drift")
    monitor_reliance_rows: int = Field(
        500,
        ge=0,
        description="Served records the monitor explains (every class's TreeSHAP, ~25 ms of CPU "
        "each on a 3,465-tree forest) to compare what the champion relies on with training's; "
        "fewer for a forest of full-depth trees, as many as its nodes allow (100 of a 1.2M-node "
        "forest, ~85 ms each); 0: off",
    )
    monitor_accuracy_drop: float = Field(
        0.05, gt=0, lt=1, description="Alert when live accuracy falls this far below training's"
    )
    notify_webhook_url: str = Field("", description="Slack-compatible webhook; unset: no messages")
    notify_timeout_s: float = Field(5.0, gt=0, description="Timeout of one webhook post")

    # --- web UI ------------------------------------------------------------------------------
    ui_host: str = Field(
        "127.0.0.1", description="Bind address of `forestops ui` (0.0.0.0 in compose)"
    )
    ui_port: int = Field(8501, description="Port of `forestops ui`")
    ui_api_key: SecretStr | None = Field(
        None, description="X-API-Key the UI sends; default: the first of API_KEYS"
    )
    ui_request_timeout_s: float = Field(
        60.0, gt=0, description="UI -> inference API; large CSV batches need time"
    )
    operations_api_url: str = Field(
        "",
        description="Where the UI reaches the operations API (`forestops operations-api`); "
        "unset: the Model page shows no operator actions",
    )

    # --- operations API ------------------------------------------------------------------------
    operations_port: int = Field(
        8090, description="Port of `forestops operations-api` and of the one `forestops up` starts"
    )

    # --- embedded scheduler ------------------------------------------------------------------
    ingest_interval_s: float = Field(
        300.0, gt=0, description="Embedded scheduler: seconds between ingestion runs"
    )
    train_interval_s: float = Field(
        900.0, gt=0, description="Embedded scheduler: seconds between training runs"
    )
    up_host: str = Field(
        "127.0.0.1", description="Bind address of every server `forestops up` starts"
    )
    inference_port: int = Field(8000, description="Inference API port in `forestops up`")
    mlflow_port: int = Field(5000, description="MLflow UI port in `forestops up`")
    up_start_ui: bool = Field(True, description="`forestops up` also starts the web UI")
    up_start_mlflow_ui: bool = Field(True, description="`forestops up` also starts the MLflow UI")
    shutdown_grace_s: float = Field(
        20.0,
        ge=0,
        description="On Ctrl-C a running job gets this long to finish before SIGTERM (SIGKILL 5 s later)",
    )

    @field_validator("train_candidates", "api_keys", "inference_reload_urls", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("source_api_base_url", "operations_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value:
            require_http_url(value)
        return value

    @field_validator("configured_database_url", "ui_database_url", "inference_database_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str | None) -> str | None:
        from sqlalchemy.engine import make_url  # here: `forestops --help` stays light
        from sqlalchemy.exc import ArgumentError

        if value:
            try:
                make_url(value)
            except (ArgumentError, ValueError):  # ValueError: a port that is not a number
                raise ValueError(
                    "not a SQLAlchemy URL (e.g. sqlite:///path/forestops.db, "
                    "postgresql+psycopg://{user}:{password}@{host}/{database})"
                ) from None
        return value

    @field_validator("forestops_home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator(*_CONFIGURED.values())
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None  # `DATABASE_URL=` in a .env file means "the default", as before

    @computed_field  # type: ignore[prop-decorator]
    @property
    def database_url(self) -> str:
        return self.configured_database_url or f"sqlite:///{self.forestops_home / 'forestops.db'}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mlflow_tracking_uri(self) -> str:
        return (
            self.configured_mlflow_tracking_uri or f"sqlite:///{self.forestops_home / 'mlflow.db'}"
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def artifact_store_uri(self) -> str:
        return self.configured_artifact_store_uri or str(self.forestops_home / "artifacts")

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """`update` names a derived setting by its public name, as everywhere else
        (`{"database_url": ...}`): it lands in the `configured_*` field, where the property reads
        it (pydantic would store it under the property's name, where nothing ever reads it)."""
        if update:
            update = {_CONFIGURED.get(key, key): value for key, value in update.items()}
        return super().model_copy(update=update, deep=deep)

    @property
    def models_dir(self) -> Path:
        return self.forestops_home / "models"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.forestops_home / "mlruns"

    def ensure_home(self) -> Path:
        self.forestops_home.mkdir(parents=True, exist_ok=True)
        return self.forestops_home


def get_settings(**overrides: object) -> Settings:
    """Fresh settings from the environment (never cached: tests and the CLI change the env)."""
    return Settings(**overrides)  # type: ignore[arg-type]


def require_http_url(url: str) -> str:
    """`url` if it is http(s)://host...; a URL without a scheme is a mistake to name at once (it
    would otherwise fail every call as an 'unsupported protocol' network fault)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL: write it as http://host:port")
    return url


_MAY_HOLD_SECRETS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "DATABASE_URL", "TRACKING_URI")


def describe_invalid(error: ValidationError) -> str:
    """Bad settings in one line, by their environment names: `GROUP_NUMBER='11': Input should
    be less than or equal to 10`, for a message without pydantic's multi-line report."""
    problems = []
    for problem in error.errors(include_url=False):
        name = "_".join(str(part) for part in problem["loc"][:1]).upper() or "settings"
        shown = problem.get("input")
        secret = any(word in name for word in _MAY_HOLD_SECRETS)
        given = f"={shown!r}" if isinstance(shown, str | int | float) and not secret else ""
        message = problem["msg"].removeprefix("Value error, ")
        problems.append(f"{name}{given}: {message}")
    return "bad setting " + "; ".join(problems)
