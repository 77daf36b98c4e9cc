"""Every sentence of the UI in English and Spanish (the course's language), in ONE dictionary.

Pages ask for text by key (`t("predict_title")`); the language lives in the session, so one set
of pages serves both languages. Class and category names come from the data contract, feature
names and descriptions from here. A test checks that every key has both languages with the same
placeholders.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import streamlit as st

from forestops import contract

Language = Literal["en", "es"]
LANGUAGES: Final[dict[Language, str]] = {"en": "English", "es": "Español"}
SESSION_KEY = "language"

TEXT: Final[dict[str, dict[Language, str]]] = {
    # --- frame and navigation ---------------------------------------------------------------
    "tagline": {
        "en": "Forest cover type predictions for the Roosevelt National Forest.",
        "es": "Predicción del tipo de cubierta forestal del Bosque Nacional Roosevelt.",
    },
    "nav_home": {"en": "Home", "es": "Inicio"},
    "nav_predict": {"en": "Predict", "es": "Predecir"},
    "nav_analytics": {"en": "Analytics", "es": "Analítica"},
    "nav_model": {"en": "Model", "es": "Modelo"},
    "nav_status": {"en": "Settings / status", "es": "Ajustes / estado"},
    "nav_monitoring": {"en": "Monitoring", "es": "Monitorización"},
    # --- monitoring page -----------------------------------------------------------------------
    "monitoring_title": {"en": "Monitoring", "es": "Monitorización"},
    "monitoring_intro": {
        "en": "Does the champion still see the data it was trained on, and is it still right? "
        "Each report compares the inputs served recently and the batches ingested since the "
        "champion's training with its training data (PSI per feature; above {threshold} is "
        "drift), and scores the champion on the new labelled rows.",
        "es": "¿Sigue viendo el campeón los datos con los que se entrenó, y sigue acertando? "
        "Cada informe compara las entradas servidas recientemente y los lotes ingeridos desde el "
        "entrenamiento del campeón con sus datos de entrenamiento (PSI por variable; por encima "
        "de {threshold} hay deriva) y evalúa al campeón con las nuevas filas etiquetadas.",
    },
    "monitoring_no_reports": {
        "en": "No monitoring report yet. `forestops up` runs the monitor every hour; "
        "`forestops monitor` runs it now.",
        "es": "Todavía no hay informes de monitorización. `forestops up` ejecuta el monitor cada "
        "hora; `forestops monitor` lo ejecuta ahora.",
    },
    "monitoring_alert": {
        "en": "Latest report ({time}): **alert**, retraining was requested.",
        "es": "Último informe ({time}): **alerta**, se solicitó un reentrenamiento.",
    },
    "monitoring_ok": {
        "en": "Latest report ({time}): no drift, no accuracy drop.",
        "es": "Último informe ({time}): sin deriva ni caída de exactitud.",
    },
    "live_accuracy": {"en": "Live accuracy", "es": "Exactitud en datos nuevos"},
    "training_accuracy": {"en": "Training evaluation", "es": "Evaluación del entrenamiento"},
    "prediction_shift": {"en": "Predicted-class shift (PSI)", "es": "Cambio de clases (PSI)"},
    "drift_source": {"en": "Data compared", "es": "Datos comparados"},
    "source_served": {"en": "Served inputs", "es": "Entradas servidas"},
    "source_ingested": {"en": "New batches", "es": "Lotes nuevos"},
    "drift_over_time": {
        "en": "Feature drift over time (PSI)",
        "es": "Deriva por variable a lo largo del tiempo (PSI)",
    },
    "accuracy_over_time": {
        "en": "Live accuracy over time",
        "es": "Exactitud en datos nuevos a lo largo del tiempo",
    },
    "reliance_title": {
        "en": "What the champion relies on: training vs served",
        "es": "En qué se apoya el campeón: entrenamiento frente a lo servido",
    },
    "reliance_caption": {
        "en": "Each input's share of the model's mean |push| (TreeSHAP) on the training's "
        "evaluation rows and on {rows} records it answered in the latest window. Total shift "
        "{total}: the part of what the model relies on that moved between inputs (0: none, 1: all).",
        "es": "Parte de cada entrada en el empuje medio |·| del modelo (TreeSHAP) en las filas de "
        "evaluación del entrenamiento y en {rows} registros que respondió en la última ventana. "
        "Cambio total {total}: la parte de aquello en que se apoya el modelo que pasó de unas "
        "entradas a otras (0: nada, 1: todo).",
    },
    "reliance_skipped": {
        "en": "Not compared in the latest report: {note}.",
        "es": "No se comparó en el último informe: {note}.",
    },
    "reliance_share": {"en": "Share of mean |push|", "es": "Parte del empuje medio |·|"},
    "reliance_training": {"en": "Training", "es": "Entrenamiento"},
    "reliance_served": {"en": "Served", "es": "Servido"},
    "reliance_shift": {"en": "Shift of share", "es": "Cambio de la parte"},
    "report_time": {"en": "Report time", "es": "Hora del informe"},
    "not_measured": {"en": "not measured", "es": "sin medir"},
    "language": {"en": "Language", "es": "Idioma"},
    # --- failures, said plainly ----------------------------------------------------------------
    "page_failed": {
        "en": "This page hit a problem and stopped ({error}). The other pages still work; "
        "**Settings / status** shows which service is down.",
        "es": "Esta página encontró un problema y se detuvo ({error}). Las demás páginas siguen "
        "funcionando; **Ajustes / estado** muestra qué servicio no responde.",
    },
    "database_failed": {
        "en": "The database cannot be read right now ({error}). Predictions still work.",
        "es": "No se puede leer la base de datos ahora ({error}). Las predicciones siguen "
        "funcionando.",
    },
    "database_not_ready": {
        "en": "No data has been ingested yet ({detail}). Start the stack with `forestops up` or "
        "run `forestops ingest`; predictions work meanwhile.",
        "es": "Todavía no se ha ingerido ningún dato ({detail}). Inicie la plataforma con "
        "`forestops up` o ejecute `forestops ingest`; mientras tanto las predicciones funcionan.",
    },
    "mlflow_failed": {
        "en": "MLflow cannot be read right now ({error}). The rest of the page still works.",
        "es": "No se puede leer MLflow ahora ({error}). El resto de la página sigue funcionando.",
    },
    "mlflow_not_ready": {
        "en": "No model has been trained yet ({detail}). Run `forestops train` once data is in.",
        "es": "Todavía no se ha entrenado ningún modelo ({detail}). Ejecute `forestops train` "
        "cuando haya datos.",
    },
    "api_failed": {
        "en": "The answer of the inference API could not be shown ({error}).",
        "es": "No se pudo mostrar la respuesta de la API de inferencia ({error}).",
    },
    "api_server_error": {
        "en": "The inference API answered with an error (HTTP {status}): {detail}",
        "es": "La API de inferencia respondió con un error (HTTP {status}): {detail}",
    },
    "api_unreachable": {
        "en": "The inference API is not reachable at {detail}. Start it with `forestops serve`; "
        "the Analytics and Model pages still work.",
        "es": "La API de inferencia no responde en {detail}. Iníciela con `forestops serve`; "
        "las páginas Analítica y Modelo siguen funcionando.",
    },
    "api_no_model": {
        "en": "The inference API is up but has no model to serve yet ({detail}). "
        "Train one with `forestops train`.",
        "es": "La API de inferencia funciona pero aún no tiene modelo ({detail}). "
        "Entrene uno con `forestops train`.",
    },
    "api_rejected": {
        "en": "The inference API rejected the input:",
        "es": "La API de inferencia rechazó los datos:",
    },
    "api_too_large": {
        "en": "Too many rows for one request: {detail}. Split the file into smaller ones.",
        "es": "Demasiadas filas para una sola petición: {detail}. Divida el archivo en otros "
        "más pequeños.",
    },
    "api_unauthorized": {
        "en": "The inference API refused the UI's API key. Set `UI_API_KEY` to one of the "
        "service's `API_KEYS`.",
        "es": "La API de inferencia rechazó la clave de la interfaz. Configure `UI_API_KEY` con "
        "una de las `API_KEYS` del servicio.",
    },
    "more_problems": {"en": "… and {count} more", "es": "… y {count} más"},
    "status_ok": {"en": "ok", "es": "operativa"},
    "status_degraded": {"en": "degraded", "es": "degradada"},
    "status_unavailable": {"en": "no model", "es": "sin modelo"},
    "status_unreachable": {"en": "down", "es": "caída"},
    "down": {"en": "down", "es": "caída"},
    # --- home ----------------------------------------------------------------------------------
    "home_intro": {
        "en": "forestops collects cartographic data of forest plots in batches, keeps every row "
        "with its lineage, trains and compares models, promotes a champion only when it beats "
        "the current one, and serves it. Ask it which of the seven cover types grows on a plot.",
        "es": "forestops recoge por lotes datos cartográficos de parcelas forestales, guarda "
        "cada fila con su linaje, entrena y compara modelos, promueve un campeón solo cuando "
        "supera al actual y lo sirve. Pregúntele cuál de los siete tipos de cubierta crece en "
        "una parcela.",
    },
    "rows_ingested": {"en": "Rows ingested", "es": "Filas ingeridas"},
    "batches": {"en": "Batches", "es": "Lotes"},
    "batches_help": {
        "en": "Distinct batches of the data source, collected in {records} fetches",
        "es": "Lotes distintos de la fuente de datos, recogidos en {records} consultas",
    },
    "last_ingestion": {"en": "Last ingestion (UTC)", "es": "Última ingesta (UTC)"},
    "api_status": {"en": "Inference API", "es": "API de inferencia"},
    "champion_version": {"en": "Champion version", "es": "Versión campeona"},
    "accuracy": {"en": "Accuracy", "es": "Exactitud"},
    "macro_f1": {"en": "Macro F1", "es": "F1 macro"},
    "no_rows_yet": {
        "en": "The database is ready but holds no rows yet: the first batch arrives with the "
        "next ingestion.",
        "es": "La base de datos está lista pero aún no tiene filas: el primer lote llegará con "
        "la próxima ingesta.",
    },
    "home_api_down": {
        "en": "The inference API is not answering, so predictions are paused. The figures "
        "below come from MLflow and the database.",
        "es": "La API de inferencia no responde, así que las predicciones están en pausa. Las "
        "cifras siguientes vienen de MLflow y de la base de datos.",
    },
    "no_champion_yet": {
        "en": "No champion model yet: the first training that finishes becomes champion.",
        "es": "Aún no hay modelo campeón: el primer entrenamiento que termine será el campeón.",
    },
    "home_go_predict": {"en": "Make a prediction", "es": "Hacer una predicción"},
    "cover_types_title": {"en": "The seven cover types", "es": "Los siete tipos de cubierta"},
    # --- predict -------------------------------------------------------------------------------
    "predict_title": {"en": "Predict the cover type", "es": "Predecir el tipo de cubierta"},
    "predict_api_down": {
        "en": "The inference API at {url} is not answering: you can fill in the forms, but "
        "predictions will fail until it is back. Analytics and Model still work.",
        "es": "La API de inferencia en {url} no responde: puede rellenar los formularios, pero "
        "las predicciones fallarán hasta que vuelva. Analítica y Modelo siguen funcionando.",
    },
    "predict_no_model": {
        "en": "The inference API has no model yet ({detail}): predictions start once a "
        "training has finished.",
        "es": "La API de inferencia aún no tiene modelo ({detail}): las predicciones empiezan "
        "cuando termine un entrenamiento.",
    },
    "tab_single": {"en": "One plot", "es": "Una parcela"},
    "tab_batch": {"en": "Table", "es": "Tabla"},
    "tab_csv": {"en": "CSV file", "es": "Archivo CSV"},
    "single_help": {
        "en": "Describe one plot. Every field is limited to physically possible values.",
        "es": "Describa una parcela. Cada campo admite solo valores físicamente posibles.",
    },
    "predict_button": {"en": "Predict", "es": "Predecir"},
    "predicted_as": {
        "en": "Predicted cover type: **{name}** (class {id})",
        "es": "Tipo de cubierta predicho: **{name}** (clase {id})",
    },
    "confidence": {"en": "Confidence", "es": "Confianza"},
    "model_version": {"en": "Model version", "es": "Versión del modelo"},
    "why_title": {"en": "Why {name}?", "es": "¿Por qué {name}?"},
    "why_caption": {
        "en": "Each bar is how far one input moved the model's score for {name} (log-odds) from "
        "its average, {base}; the bars add up to the score exactly (TreeSHAP). Green pushes "
        "towards {name}, red away from it.",
        "es": "Cada barra indica cuánto movió una entrada la puntuación del modelo para {name} "
        "(log-odds) respecto a su media, {base}; las barras suman exactamente la puntuación "
        "(TreeSHAP). El verde empuja hacia {name}, el rojo en contra.",
    },
    "why_unavailable": {
        "en": "No explanation for this answer: {reason}",
        "es": "Esta respuesta no tiene explicación: {reason}",
    },
    "reason_towards": {
        "en": "{feature} {value} → towards {name} {amount}",
        "es": "{feature} {value} → a favor de {name} {amount}",
    },
    "reason_away": {
        "en": "{feature} {value} → away from {name} {amount}",
        "es": "{feature} {value} → en contra de {name} {amount}",
    },
    "push_axis": {"en": "Push towards {name}", "es": "Empuje hacia {name}"},
    "reason_column": {"en": "Reason {n}", "es": "Motivo {n}"},
    "probability": {"en": "Probability", "es": "Probabilidad"},
    "cover_type": {"en": "Cover type", "es": "Tipo de cubierta"},
    "batch_help": {
        "en": "Edit the table, add rows with **+** or delete them, then predict them all in "
        "one call.",
        "es": "Edite la tabla, añada filas con **+** o elimínelas y luego predígalas todas en "
        "una sola llamada.",
    },
    "predict_table": {"en": "Predict all rows", "es": "Predecir todas las filas"},
    "table_empty": {"en": "The table has no rows to predict.", "es": "La tabla no tiene filas."},
    "table_incomplete": {
        "en": "Some rows have empty cells; fill them in or delete those rows:",
        "es": "Algunas filas tienen celdas vacías; complételas o elimine esas filas:",
    },
    "row_missing": {"en": "row {row}: {columns}", "es": "fila {row}: {columns}"},
    "csv_help": {
        "en": "Upload a CSV with a header row naming the 12 input columns ({columns}); the "
        "course's CamelCase names work too, and a `cover_type` column is used to score the "
        "predictions.",
        "es": "Suba un CSV con una fila de encabezado con las 12 columnas de entrada "
        "({columns}); también sirven los nombres CamelCase del curso, y una columna "
        "`cover_type` se usa para evaluar las predicciones.",
    },
    "example_csv": {"en": "Download an example CSV", "es": "Descargar un CSV de ejemplo"},
    "csv_label": {"en": "CSV file", "es": "Archivo CSV"},
    "csv_ok": {
        "en": "{rows} rows with all 12 columns: sending them to the inference API.",
        "es": "{rows} filas con las 12 columnas: enviándolas a la API de inferencia.",
    },
    "predicting": {"en": "Predicting…", "es": "Prediciendo…"},
    "csv_not_text": {
        "en": "This file is not a text CSV (it looks binary: {error}). Export it as CSV, UTF-8.",
        "es": "Este archivo no es un CSV de texto (parece binario: {error}). Expórtelo como "
        "CSV UTF-8.",
    },
    "csv_unreadable": {
        "en": "This file cannot be read as CSV: {error}",
        "es": "Este archivo no se puede leer como CSV: {error}",
    },
    "csv_empty": {
        "en": "This file has no data rows under its header.",
        "es": "Este archivo no tiene filas de datos bajo su encabezado.",
    },
    "csv_no_features": {
        "en": "This does not look like a forest plot CSV: none of the input columns is there. "
        "The first line must be a header with: {expected}",
        "es": "Esto no parece un CSV de parcelas: no aparece ninguna columna de entrada. La "
        "primera línea debe ser un encabezado con: {expected}",
    },
    "csv_columns": {
        "en": "The columns of this file do not match the data contract:",
        "es": "Las columnas de este archivo no coinciden con el contrato de datos:",
    },
    "csv_missing": {"en": "missing columns: {columns}", "es": "faltan columnas: {columns}"},
    "csv_unknown": {"en": "unknown columns: {columns}", "es": "columnas desconocidas: {columns}"},
    "csv_repeated": {"en": "repeated columns: {columns}", "es": "columnas repetidas: {columns}"},
    "csv_predicted": {"en": "{rows} rows predicted.", "es": "{rows} filas predichas."},
    "accuracy_against_labels": {
        "en": "Accuracy against the file's cover_type",
        "es": "Exactitud frente al cover_type del archivo",
    },
    "download_predictions": {"en": "Download predictions", "es": "Descargar predicciones"},
    # --- analytics -----------------------------------------------------------------------------
    "analytics_title": {"en": "Analytics of the ingested data", "es": "Analítica de los datos"},
    "analytics_empty": {
        "en": "No rows ingested yet, so there is nothing to chart. Predictions work meanwhile.",
        "es": "Aún no hay filas ingeridas, así que no hay nada que graficar. Mientras tanto las "
        "predicciones funcionan.",
    },
    "sample_size": {"en": "Sample size", "es": "Tamaño de la muestra"},
    "sample_size_help": {
        "en": "Charts of individual rows use a random sample; counts use every row.",
        "es": "Los gráficos de filas individuales usan una muestra aleatoria; los conteos usan "
        "todas las filas.",
    },
    "sample_caption": {
        "en": "Random sample of {shown:,} of {total:,} rows.",
        "es": "Muestra aleatoria de {shown:,} de {total:,} filas.",
    },
    "class_distribution": {
        "en": "Class distribution (all rows)",
        "es": "Distribución de clases (todas las filas)",
    },
    "rows": {"en": "Rows", "es": "Filas"},
    "no_batches_yet": {"en": "No batches yet.", "es": "Aún no hay lotes."},
    "rows_per_batch": {
        "en": "Rows per batch over time",
        "es": "Filas por lote a lo largo del tiempo",
    },
    "fetched_at": {"en": "Fetched at", "es": "Recibido el"},
    "batch_number": {"en": "Batch number", "es": "Número de lote"},
    "batch_id": {"en": "Batch id", "es": "Id del lote"},
    "cumulative_rows": {"en": "Rows stored (cumulative)", "es": "Filas guardadas (acumulado)"},
    "harvest_coverage": {
        "en": "Estimated coverage of each harvested batch",
        "es": "Cobertura estimada de cada lote cosechado",
    },
    "estimated_coverage": {"en": "Estimated coverage", "es": "Cobertura estimada"},
    "group_number": {"en": "Group", "es": "Grupo"},
    "harvest_calls": {"en": "Calls", "es": "Llamadas"},
    "distinct_rows": {"en": "Distinct rows", "es": "Filas distintas"},
    "estimated_batch_size": {"en": "Estimated batch size", "es": "Tamaño estimado del lote"},
    "outcome_inserted": {"en": "inserted", "es": "insertadas"},
    "outcome_duplicates": {"en": "duplicates", "es": "duplicadas"},
    "outcome_quarantined": {"en": "quarantined", "es": "en cuarentena"},
    "feature": {"en": "Feature", "es": "Variable"},
    "feature_by_class": {"en": "{feature} by class", "es": "{feature} por clase"},
    "versus": {"en": "Elevation against", "es": "Elevación frente a"},
    "elevation_vs": {"en": "Elevation vs {feature}", "es": "Elevación frente a {feature}"},
    "correlation": {
        "en": "Correlation of the numeric features",
        "es": "Correlación de las variables numéricas",
    },
    "quarantine_title": {"en": "Quarantine", "es": "Cuarentena"},
    "no_quarantine": {
        "en": "No row has been quarantined: every row received passed validation.",
        "es": "Ninguna fila está en cuarentena: todas las filas recibidas pasaron la validación.",
    },
    "quarantine_by_column": {
        "en": "Quarantined rows by column at fault",
        "es": "Filas en cuarentena por columna causante",
    },
    "whole_row": {"en": "(whole row)", "es": "(fila completa)"},
    "column": {"en": "Column", "es": "Columna"},
    "reason": {"en": "Reason", "es": "Motivo"},
    # --- model ---------------------------------------------------------------------------------
    "model_title": {"en": "The model", "es": "El modelo"},
    "open_mlflow": {"en": "Open the MLflow UI", "es": "Abrir la interfaz de MLflow"},
    "served_model": {
        "en": "Served now by the inference API",
        "es": "Servido ahora por la API de inferencia",
    },
    "model_api_down": {
        "en": "The inference API at {url} is not answering; below is what MLflow knows.",
        "es": "La API de inferencia en {url} no responde; abajo está lo que sabe MLflow.",
    },
    "model_name": {"en": "Registered model", "es": "Modelo registrado"},
    "alias": {"en": "Alias", "es": "Alias"},
    "served_caption": {
        "en": "Trained {trained} · run `{run}` · `{uri}`",
        "es": "Entrenado el {trained} · ejecución `{run}` · `{uri}`",
    },
    "details": {"en": "Parameters and lineage", "es": "Parámetros y linaje"},
    "registry_champion": {"en": "Champion in the registry", "es": "Campeón en el registro"},
    "best_run": {"en": "best run (registry disabled)", "es": "mejor ejecución (sin registro)"},
    "champion_line": {
        "en": "Version **{version}**, run `{run}`, loaded as `{uri}`.",
        "es": "Versión **{version}**, ejecución `{run}`, cargada como `{uri}`.",
    },
    "champion_not_served": {
        "en": "The API serves version {served} but the champion is now version {champion}: the "
        "service switches at its next poll (or `POST /reload`).",
        "es": "La API sirve la versión {served} pero el campeón es ahora la versión {champion}: "
        "el servicio cambia en su próxima consulta (o con `POST /reload`).",
    },
    "last_training": {"en": "Last training", "es": "Último entrenamiento"},
    "no_training_yet": {"en": "No training has run yet.", "es": "Aún no se ha entrenado."},
    "training_caption": {
        "en": "Run {name}, started {started}, status {status}.",
        "es": "Ejecución {name}, iniciada {started}, estado {status}.",
    },
    "no_candidates": {
        "en": "This training has no finished candidates.",
        "es": "Este entrenamiento no tiene candidatos terminados.",
    },
    "candidate": {"en": "Candidate", "es": "Candidato"},
    "fit_seconds": {"en": "Fit time", "es": "Tiempo de ajuste"},
    "status": {"en": "Status", "es": "Estado"},
    "run_id": {"en": "Run", "es": "Ejecución"},
    "candidates_compared": {
        "en": "Candidates on the same evaluation data",
        "es": "Candidatos sobre los mismos datos de evaluación",
    },
    "global_importance": {
        "en": "What the champion relies on",
        "es": "En qué se apoya el campeón",
    },
    "global_importance_caption": {
        "en": "Mean size of each input's push on the model's scores (TreeSHAP, summed over the "
        "seven classes) on the training's evaluation rows: the longer the bar, the more the "
        "answers depend on it.",
        "es": "Tamaño medio del empuje de cada entrada sobre las puntuaciones del modelo "
        "(TreeSHAP, sumado sobre las siete clases) en las filas de evaluación del "
        "entrenamiento: cuanto más larga la barra, más dependen de ella las respuestas.",
    },
    "no_global_importance": {
        "en": "No global explanation for this champion (only LightGBM models have exact ones, "
        "logged by training since explanations were added).",
        "es": "Este campeón no tiene explicación global (solo los modelos LightGBM la tienen "
        "exacta, registrada por los entrenamientos desde que existen las explicaciones).",
    },
    "mean_abs_contribution": {"en": "Mean |push|", "es": "Empuje medio |·|"},
    "dependence_plots": {
        "en": "How the strongest inputs push, value by value",
        "es": "Cómo empujan las entradas principales, valor a valor",
    },
    "confusion_matrix": {
        "en": "Confusion matrix of the champion",
        "es": "Matriz de confusión del campeón",
    },
    "no_confusion_matrix": {
        "en": "No confusion matrix was logged for the champion.",
        "es": "No se registró una matriz de confusión para el campeón.",
    },
    "predicted_class": {"en": "Predicted", "es": "Predicha"},
    "true_class": {"en": "True", "es": "Real"},
    "version_history": {
        "en": "Version history and promotion decisions",
        "es": "Historial de versiones y decisiones de promoción",
    },
    "registry_disabled": {
        "en": "The model registry is disabled (MLFLOW_ENABLE_MODEL_REGISTRY=false): the best "
        "run of the experiment is served, so there are no versions.",
        "es": "El registro de modelos está desactivado (MLFLOW_ENABLE_MODEL_REGISTRY=false): se "
        "sirve la mejor ejecución del experimento, así que no hay versiones.",
    },
    "no_versions_yet": {
        "en": "No model version registered yet.",
        "es": "Aún no hay versiones registradas.",
    },
    "decision": {"en": "Decision", "es": "Decisión"},
    "decision_promoted": {"en": "promoted", "es": "promovida"},
    "decision_rejected": {"en": "rejected", "es": "rechazada"},
    "created": {"en": "Registered", "es": "Registrada"},
    "challenger_accuracy": {"en": "Challenger accuracy", "es": "Exactitud del aspirante"},
    "champion_accuracy": {"en": "Champion accuracy then", "es": "Exactitud del campeón"},
    "audit_trail": {"en": "Operator actions", "es": "Acciones de operación"},
    "audit_caption": {
        "en": "Promotions, rollbacks and forced trainings (`forestops model promote`, "
        "`model rollback`, `train --force`, or a signed-in operator here), refused ones "
        "included; newest first.",
        "es": "Promociones, reversiones y entrenamientos forzados (`forestops model promote`, "
        "`model rollback`, `train --force`, o un operador que haya entrado aquí), también los "
        "rechazados; los más recientes primero.",
    },
    "no_audit_yet": {
        "en": "No operator action yet: every champion so far was chosen by the training gate.",
        "es": "Aún no hay acciones de operación: cada campeón lo eligió la compuerta de "
        "entrenamiento.",
    },
    "audit_when": {"en": "When (UTC)", "es": "Cuándo (UTC)"},
    "audit_action": {"en": "Action", "es": "Acción"},
    "audit_from": {"en": "Champion before", "es": "Campeón anterior"},
    "audit_to": {"en": "Version", "es": "Versión"},
    "audit_outcome": {"en": "Outcome", "es": "Resultado"},
    "audit_actor": {"en": "By", "es": "Por"},
    "audit_reason": {"en": "Reason", "es": "Motivo"},
    "audit_detail": {"en": "What happened", "es": "Qué pasó"},
    # --- operator actions (Model page, OPERATIONS_API_URL) -------------------------------------
    "operator_title": {"en": "Act on the champion", "es": "Actuar sobre el campeón"},
    "operator_sign_in_caption": {
        "en": "Promoting, rolling back and retraining are for operators: sign in with the "
        "operations API's admin key. Everyone else sees this page read-only.",
        "es": "Promover, revertir y reentrenar es cosa de operadores: entra con la clave de "
        "administración de la API de operaciones. Los demás ven esta página solo en lectura.",
    },
    "operator_sign_in": {"en": "Sign in as operator", "es": "Entrar como operador"},
    "operator_name": {
        "en": "Your name (kept in the audit trail)",
        "es": "Tu nombre (queda en el registro de acciones)",
    },
    "operator_key": {"en": "Admin key", "es": "Clave de administración"},
    "operator_signed_in": {
        "en": "Signed in as operator **{name}** (in this browser session only).",
        "es": "Has entrado como operador **{name}** (solo en esta sesión del navegador).",
    },
    "operator_sign_out": {"en": "Sign out", "es": "Salir"},
    "operator_wrong_key": {
        "en": "The operations API refused this key: {detail}",
        "es": "La API de operaciones rechazó esta clave: {detail}",
    },
    "operator_disabled": {
        "en": "Operator actions are disabled: {detail}",
        "es": "Las acciones de operación están desactivadas: {detail}",
    },
    "operator_unreachable": {
        "en": "The operations API does not answer: {detail}",
        "es": "La API de operaciones no responde: {detail}",
    },
    "operator_refused": {"en": "Refused: {detail}", "es": "Rechazado: {detail}"},
    "operator_invalid": {"en": "Not accepted: {detail}", "es": "No aceptado: {detail}"},
    "operator_failed": {
        "en": "The operations API failed: {detail}",
        "es": "La API de operaciones falló: {detail}",
    },
    "promote_title": {"en": "Promote a version", "es": "Promover una versión"},
    "promote_button": {"en": "Promote", "es": "Promover"},
    "no_other_version": {
        "en": "No other version to promote.",
        "es": "No hay otra versión que promover.",
    },
    "action_reason": {"en": "Reason", "es": "Motivo"},
    "rollback_title": {"en": "Roll back", "es": "Revertir"},
    "rollback_caption": {
        "en": "Back to the champion the current one replaced.",
        "es": "Vuelve al campeón al que reemplazó el actual.",
    },
    "rollback_button": {"en": "Roll back", "es": "Revertir"},
    "train_title": {"en": "Train now", "es": "Entrenar ahora"},
    "train_caption": {
        "en": "A training on all curated rows, new data or not; the gate still decides whether "
        "its model becomes champion.",
        "es": "Un entrenamiento con todas las filas depuradas, haya datos nuevos o no; la "
        "compuerta sigue decidiendo si su modelo pasa a campeón.",
    },
    "train_button": {"en": "Train now", "es": "Entrenar ahora"},
    "action_done": {"en": "Done: {detail}", "es": "Hecho: {detail}"},
    "training_started": {
        "en": "Training started (asked by {actor}); the audit trail shows its outcome when it "
        "ends.",
        "es": "Entrenamiento iniciado (pedido por {actor}); el registro de acciones mostrará su "
        "resultado al terminar.",
    },
    "training_running": {
        "en": "A training asked by {actor} at {started} is running.",
        "es": "Está en curso un entrenamiento pedido por {actor} a las {started}.",
    },
    "training_finished": {
        "en": "Last training asked here ({actor}, {finished}): {state}. {summary}",
        "es": "Último entrenamiento pedido aquí ({actor}, {finished}): {state}. {summary}",
    },
    "refresh": {"en": "Refresh", "es": "Actualizar"},
    # --- settings / status ---------------------------------------------------------------------
    "status_title": {"en": "Settings and status", "es": "Ajustes y estado"},
    "status_caption": {
        "en": "Checked live each time this page opens.",
        "es": "Se comprueba en vivo cada vez que se abre esta página.",
    },
    "inference_api": {"en": "Inference API", "es": "API de inferencia"},
    "database": {"en": "Database", "es": "Base de datos"},
    "mlflow": {"en": "MLflow", "es": "MLflow"},
    "check_api_ok": {
        "en": "Reachable, serving model version {version}.",
        "es": "Accesible, sirve la versión {version} del modelo.",
    },
    "check_api_degraded": {
        "en": "Reachable but {status}: {detail}",
        "es": "Accesible pero {status}: {detail}",
    },
    "check_api_down": {"en": "Not reachable: {detail}", "es": "No accesible: {detail}"},
    "check_db_ok": {
        "en": "Connected: {rows} rows in {batches} batches.",
        "es": "Conectada: {rows} filas en {batches} lotes.",
    },
    "check_db_empty": {
        "en": "Nothing ingested yet: {detail}",
        "es": "Aún no hay nada ingerido: {detail}",
    },
    "check_db_down": {"en": "Not reachable: {error}", "es": "No accesible: {error}"},
    "check_mlflow_ok": {
        "en": "Connected: {runs} runs, {versions} registered versions.",
        "es": "Conectado: {runs} ejecuciones, {versions} versiones registradas.",
    },
    "check_mlflow_empty": {
        "en": "Nothing trained yet: {detail}",
        "es": "Aún no hay nada entrenado: {detail}",
    },
    "check_mlflow_down": {"en": "Not reachable: {error}", "es": "No accesible: {error}"},
    "check_again": {"en": "Check again", "es": "Comprobar de nuevo"},
    "configuration": {"en": "Addresses in use", "es": "Direcciones en uso"},
    "setting": {"en": "Setting", "es": "Ajuste"},
    "value": {"en": "Value", "es": "Valor"},
    "key_configured": {"en": "configured (hidden)", "es": "configurada (oculta)"},
    "key_none": {"en": "none", "es": "ninguna"},
    # --- data contract: features ---------------------------------------------------------------
    "feature.elevation": {"en": "Elevation (m)", "es": "Elevación (m)"},
    "feature.aspect": {"en": "Aspect (°)", "es": "Orientación (°)"},
    "feature.slope": {"en": "Slope (°)", "es": "Pendiente (°)"},
    "feature.horizontal_distance_to_hydrology": {
        "en": "Horizontal distance to water (m)",
        "es": "Distancia horizontal al agua (m)",
    },
    "feature.vertical_distance_to_hydrology": {
        "en": "Vertical distance to water (m)",
        "es": "Distancia vertical al agua (m)",
    },
    "feature.horizontal_distance_to_roadways": {
        "en": "Horizontal distance to roads (m)",
        "es": "Distancia horizontal a carreteras (m)",
    },
    "feature.hillshade_9am": {"en": "Hillshade 9am", "es": "Sombreado 9h"},
    "feature.hillshade_noon": {"en": "Hillshade noon", "es": "Sombreado 12h"},
    "feature.hillshade_3pm": {"en": "Hillshade 3pm", "es": "Sombreado 15h"},
    "feature.horizontal_distance_to_fire_points": {
        "en": "Horizontal distance to fire points (m)",
        "es": "Distancia horizontal a puntos de incendio (m)",
    },
    "feature.wilderness_area": {"en": "Wilderness area", "es": "Área silvestre"},
    "feature.soil_type": {"en": "Soil type", "es": "Tipo de suelo"},
    "help.elevation": {
        "en": "Elevation above sea level",
        "es": "Altitud sobre el nivel del mar",
    },
    "help.aspect": {
        "en": "Compass direction the slope faces",
        "es": "Dirección de la brújula hacia la que mira la ladera",
    },
    "help.slope": {"en": "Steepness of the slope", "es": "Inclinación de la ladera"},
    "help.horizontal_distance_to_hydrology": {
        "en": "Horizontal distance to the nearest surface water",
        "es": "Distancia horizontal al agua superficial más cercana",
    },
    "help.vertical_distance_to_hydrology": {
        "en": "Vertical distance to the nearest surface water (negative: below it)",
        "es": "Distancia vertical al agua superficial más cercana (negativa: por debajo)",
    },
    "help.horizontal_distance_to_roadways": {
        "en": "Horizontal distance to the nearest road",
        "es": "Distancia horizontal a la carretera más cercana",
    },
    "help.hillshade_9am": {
        "en": "Hillshade index at 9am on the summer solstice (0 dark, 255 bright)",
        "es": "Índice de sombreado a las 9h en el solsticio de verano (0 oscuro, 255 claro)",
    },
    "help.hillshade_noon": {
        "en": "Hillshade index at noon on the summer solstice (0 dark, 255 bright)",
        "es": "Índice de sombreado a las 12h en el solsticio de verano (0 oscuro, 255 claro)",
    },
    "help.hillshade_3pm": {
        "en": "Hillshade index at 3pm on the summer solstice (0 dark, 255 bright)",
        "es": "Índice de sombreado a las 15h en el solsticio de verano (0 oscuro, 255 claro)",
    },
    "help.horizontal_distance_to_fire_points": {
        "en": "Horizontal distance to the nearest wildfire ignition point",
        "es": "Distancia horizontal al punto de ignición de incendio más cercano",
    },
    "help.wilderness_area": {
        "en": "One of the four wilderness areas of the Roosevelt National Forest",
        "es": "Una de las cuatro áreas silvestres del Bosque Nacional Roosevelt",
    },
    "help.soil_type": {
        "en": "Ecological Landtype Unit code of the USFS soil survey",
        "es": "Código de Unidad Ecológica de Terreno del estudio de suelos del USFS",
    },
    "range": {
        "en": "Accepted: {minimum} to {maximum} {unit}",
        "es": "Admitido: {minimum} a {maximum} {unit}",
    },
    "unit.m": {"en": "m", "es": "m"},
    "unit.degrees": {"en": "degrees", "es": "grados"},
    "unit.degrees azimuth": {"en": "degrees azimuth", "es": "grados de acimut"},
    "unit.index": {"en": "(index)", "es": "(índice)"},
    # --- data contract: cover types (names come from the contract) -------------------------
    "cover.0": {
        "en": contract.COVER_TYPES[0].description,
        "es": "Pícea de Engelmann y abeto subalpino: laderas frías, altas y húmedas.",
    },
    "cover.1": {
        "en": contract.COVER_TYPES[1].description,
        "es": "El tipo más común: altitudes medias, tras los incendios.",
    },
    "cover.2": {
        "en": contract.COVER_TYPES[2].description,
        "es": "Laderas bajas, cálidas y secas; masas abiertas.",
    },
    "cover.3": {
        "en": contract.COVER_TYPES[3].description,
        "es": "Ribereño: junto a arroyos a poca altitud; poco frecuente.",
    },
    "cover.4": {
        "en": contract.COVER_TYPES[4].description,
        "es": "Álamo temblón, a menudo donde las coníferas sufrieron perturbaciones.",
    },
    "cover.5": {
        "en": contract.COVER_TYPES[5].description,
        "es": "Laderas bajas, empinadas, más frescas y orientadas al norte.",
    },
    "cover.6": {
        "en": contract.COVER_TYPES[6].description,
        "es": "Árboles achaparrados en el límite del bosque; los sitios más altos.",
    },
}


def language() -> Language:
    """The session's choice; before any, a `?lang=es` link's (shareable Spanish pages)."""
    chosen = st.session_state.get(SESSION_KEY) or st.query_params.get("lang", "en")
    return chosen if chosen in LANGUAGES else "en"


def t(key: str, /, **values: Any) -> str:
    """The text for `key` in the session's language, with `values` filled in."""
    text = TEXT[key][language()]
    return text.format(**values) if values else text


def class_label(class_id: int) -> str:
    cover = contract.COVER_TYPES[class_id]
    return cover.name_es if language() == "es" else cover.name


def class_description(class_id: int) -> str:
    return t(f"cover.{class_id}")


def feature_label(name: str) -> str:
    return t(f"feature.{name}")


def feature_help(name: str) -> str:
    """The description, plus the accepted range for a number (the same bounds the API enforces)."""
    described = t(f"help.{name}")
    spec = contract.NUMERIC_BY_NAME.get(name)
    if spec is None:
        return described
    unit = t(f"unit.{spec.unit}")
    accepted = t("range", minimum=spec.minimum, maximum=spec.maximum, unit=unit)
    return f"{described}. {accepted}."


def number(value: float, decimals: int = 0, signed: bool = False) -> str:
    """`value` as the reader writes numbers: 3,150.5 in English, 3.150,5 in Spanish."""
    text = f"{value:{'+' if signed else ''},.{decimals}f}"
    if language() == "es":
        text = text.translate(str.maketrans(",.", ".,"))
    return text


def category_label(feature: str, code: str) -> str:
    """ "C7745 · Como - Legault families complex..." (the ELU names are proper names: untranslated)."""
    for category in contract.CATEGORICAL_FEATURES[feature]:
        if category.code == code:
            return f"{code} · {category.label}"
    return code


def language_selector(container: Any, key: str) -> None:
    """A language switch that takes effect for the whole next run, navigation titles included."""

    def remember() -> None:
        st.session_state[SESSION_KEY] = st.session_state[key]

    options = list(LANGUAGES)
    container.segmented_control(
        "Language / Idioma",
        options,
        default=language(),
        required=True,
        format_func=LANGUAGES.__getitem__,
        key=key,
        on_change=remember,
    )
