"""What the parties of a recorded call are told (typed events: :class:`kernel.events.EventSpec`)."""

from __future__ import annotations

from kernel.events import EventSpec
from recordings.models import RecordingFailed, RecordingReady

RECORDING_READY = EventSpec(
    "recording.ready",
    RecordingReady,
    "to both parties, when they may download recordings: a call's recording is "
    "complete (admins see it as admin.call.event)",
)
RECORDING_FAILED = EventSpec(
    "recording.failed",
    RecordingFailed,
    "to both parties: a leg of the call's recording could not be written (the "
    "call goes on, unrecorded)",
)
