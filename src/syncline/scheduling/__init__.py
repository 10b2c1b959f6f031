"""Running scheduled functions and cron jobs: the runtime behind ``ctx.scheduler`` and ``crons.py``.

What a user writes lives in :mod:`syncline.functions` (``CronJobs`` in
:mod:`syncline.functions.crons` is the definition of ``functions/crons.py``);
what the server does with it lives here, and the module names say which part:

* :mod:`~syncline.scheduling.jobs` -- the ``_scheduled_functions`` rows: validation,
  inserts, cancels, state transitions, completion hooks.
* :mod:`~syncline.scheduling.ctx_scheduler` -- ``ctx.scheduler`` in mutations and actions.
* :mod:`~syncline.scheduling.job_runner` -- the loop that runs due jobs (exactly once
  for mutations, at most once for actions).
* :mod:`~syncline.scheduling.cron_runner` -- keeps ``_cron_jobs`` in step with
  ``crons.py`` and schedules each job's next run.
"""
