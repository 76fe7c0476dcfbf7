"""The jobs of recordings (typed: :class:`kernel.jobs.JobSpec`)."""

from __future__ import annotations

from pydantic import Field

from kernel.jobs import JobPayload, JobSpec, Tick


class MixRecording(JobPayload):
    recording_id: int = Field(alias="recordingId")


# Both legs of a finished recording in one file (enqueued with the recording's rows).
MIX = JobSpec("recordings.mix", MixRecording)
# Files past retention, abandoned recordings, temporary leftovers.
RETENTION = JobSpec("recordings.retention", Tick)
