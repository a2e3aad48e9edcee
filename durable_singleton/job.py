"""The sample job SingletonOrchestrator runs (docs/jobs.md): :func:`run_job`, for
``df.Orchestrator.create``, and :func:`parse_job_input`, its input rule. An app that
guards orchestrators of its own needs neither."""

from ._job import parse_job_input, run_job

__all__ = ["parse_job_input", "run_job"]
