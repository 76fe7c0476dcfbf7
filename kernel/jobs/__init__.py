"""A small durable job queue in PostgreSQL: push delivery first, payments and scheduled
work next.

Why our own: arq needs Redis (and is in maintenance mode), procrastinate needs psycopg,
taskiq's PostgreSQL broker is not durable. The pattern is the well-known one:

* :class:`JobSpec` (``spec.py``) names a kind of job and the model of its payload;
  handlers get the payload as that model.
* :class:`JobQueue` (``queue.py``) enqueues, on the caller's transaction connection if
  given, so a job commits or rolls back with the change that caused it (outbox). A
  ``dedup_key`` makes an enqueue a no-op while a job of that key exists.
* :class:`Worker` (``worker.py``) claims due jobs with ``FOR UPDATE SKIP LOCKED`` (no
  two workers take the same row, none waits for another), is woken by ``LISTEN/NOTIFY``
  when a job is enqueued and polls as a fallback. A claim is a lease: a worker that
  dies mid-job leaves the job to be claimed again when the lease ends. A failed
  attempt is retried after an exponential backoff with jitter, or when the handler
  says (:class:`RetryLater`), up to the job's ``max_attempts``.
* :class:`PeriodicJobs` (``periodic.py``) enqueues each scheduled job once per slot
  across every instance: the instance whose ``(job, slot)`` row insert wins. Slots come
  every N seconds (:class:`Periodic`) or from a cron expression in a time zone
  (:class:`Calendar`).

Delivery is at least once: a handler may run again after a crash between its work and
the job's completion, so handlers make their effects idempotent (push delivery keeps a
row per (user, event, device) for that).

.. code-block:: text

    JobError
    ├── RetryLater     the attempt failed; retry (after ``after`` seconds if given)
    └── GiveUp         the job can never succeed: fail it now, no more attempts

Any other exception out of a handler counts as :class:`RetryLater` without a delay.
"""

from kernel.jobs.periodic import Calendar, Periodic, PeriodicJobs, Schedule, slot_of, tick_key
from kernel.jobs.queue import Backoff, GiveUp, JobError, JobQueue, RetryLater
from kernel.jobs.spec import Job, JobHandler, JobPayload, JobSpec, Tick, handlers
from kernel.jobs.worker import Worker

__all__ = [
    "Backoff",
    "Calendar",
    "GiveUp",
    "Job",
    "JobError",
    "JobHandler",
    "JobPayload",
    "JobQueue",
    "JobSpec",
    "Periodic",
    "PeriodicJobs",
    "RetryLater",
    "Schedule",
    "Tick",
    "Worker",
    "handlers",
    "slot_of",
    "tick_key",
]
