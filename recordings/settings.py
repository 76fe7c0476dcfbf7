"""The ``[recordings]`` settings section: the media path, the files, the links."""

from __future__ import annotations

from pydantic import Field, field_validator

from kernel.settings import Section, public_url
from kernel.signing import link_secret


class RecordingSettings(Section):
    """Recorded calls (recordings/): the server's media path, the files, the links."""

    # Allow calls.start {media: "recorded"}. Off: such calls are refused
    # (media_unavailable).
    enabled: bool = True
    # Recorded calls in progress whose media this instance carries, at most (then
    # "overloaded", reason recordings_full). About 40 per core (bench/recordings.py).
    max_calls_per_instance: int = Field(40, ge=1, le=10000)
    # The folder of recordings before the object store ([objects]). Set: recordings
    # stay in it, as before (with objects.backend "local" only). Empty: recordings are
    # in the object store, under "recordings/".
    dir: str = ""
    # Days a recording is kept; then its files are deleted and it is marked deleted.
    retention_days: float = Field(90.0, gt=0)
    # Seconds a download link (recordings.link) stays valid.
    link_ttl: float = Field(300.0, ge=10, le=86400)
    # The key that signs links (HMAC-SHA256), the same on every instance. Empty: one
    # generated and kept in the database (shared by every instance).
    link_secret: str = ""
    # Where the HTTP port is reached from outside, for links, e.g.
    # "https://media.example.com". Empty: "http://127.0.0.1:<http port>".
    public_url: str = ""
    # The parties of a call may download its recording too (admins always may), and
    # are told when it is ready (recording.ready).
    parties_may_download: bool = False
    # Tell both parties the call is recorded (recordingNotice in calls.start's answer
    # and in call.incoming), so the apps can announce it.
    notice: bool = True
    # Packets queued per leg and direction on the way to the other party before the
    # oldest are dropped (a slow peer never grows memory; the files have their own bound:
    # a leg whose writer falls about 10 s behind stops recording, "disk too slow").
    max_queue: int = Field(50, ge=4, le=10000)
    # STUN servers the server's own peer connections use to learn their public
    # address (behind NAT), e.g. ["stun:stun.example.com:3478"].
    stun_urls: tuple[str, ...] = ()

    @field_validator("stun_urls")
    @classmethod
    def _stun_scheme(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("stun:", "stuns:")):
                raise ValueError(f"{url!r}: must start with stun: or stuns:")
        return urls

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str) -> str:
        return public_url(url)

    @field_validator("link_secret")
    @classmethod
    def _link_secret(cls, secret: str) -> str:
        return link_secret(secret)
