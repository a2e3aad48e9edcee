"""SingletonOrchestrator: the guarded background job (durable_singleton's job, docs/jobs.md).

Input ``{"items": [...], "repeatEverySeconds": n, "maxPasses": m}``: each item goes
through SingletonActivity in order; with ``repeatEverySeconds`` the job runs again
after that pause, as a new execution, until ``maxPasses`` or a ``Stop`` event.
"""

import azure.durable_functions as df

from durable_singleton.job import parse_job_input, run_job

main = df.Orchestrator.create(run_job)

#: Checked by the starter before any start (see durable_singleton.Catalog).
input_rule = parse_job_input

#: It takes next runs: onConflict=bufferOne and debounceSeconds (docs/jobs.md).
accepts_next_run = True

#: At most this many instances per key when started with a key (POST
#: /api/limits/SingletonOrchestrator/{key}); the rest wait in the key's queue.
concurrency_limit = 3
