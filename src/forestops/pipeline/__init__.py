"""Pipeline steps (ingest, validate, train, evaluate, promote): plain functions every orchestrator calls.

OpenMP's wait policy for the training jobs is set by `forestops` itself (see its docstring).
"""
