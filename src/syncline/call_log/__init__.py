"""The log history: a bounded record of every function call, kept apart from the data.

* :mod:`~syncline.call_log.records` turns a finished call's
  :class:`~syncline.functions.outcomes.Outcome` into its record (time, path,
  kind, status, duration, request id, caller, log lines, error, traceback).
* :mod:`~syncline.call_log.store` keeps records in their own SQLite file in the
  data folder (never the application's database: reading or writing it is no
  part of any transaction), with size and age retention, and answers queries.
* :mod:`~syncline.call_log.writer` takes records off the calling thread and
  writes them in batches, to the store and, with ``--log-format json``, to
  standard output.
"""
