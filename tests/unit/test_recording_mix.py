"""Mixing a recording's legs: each leg at its offset on the call's timeline."""

from __future__ import annotations

from pathlib import Path

from recordings.mix import mix_legs
from recordings.ogg import OggOpusFile
from tests.media_tools import decode_ogg, dominant_frequency, opus_tone


def leg(path: Path, hz: float, packets: int) -> Path:
    ogg = OggOpusFile(path, serial=7)
    for packet in opus_tone(hz, packets * 0.02)[:packets]:
        ogg.write(packet, 960)
    ogg.close()
    return path


def test_legs_are_mixed_each_at_its_offset(tmp_path: Path) -> None:
    caller = leg(tmp_path / "caller.ogg", 440, 100)  # 2 s from the start
    callee = leg(tmp_path / "callee.ogg", 660, 100)  # 2 s from 0.5 s
    duration = mix_legs([(caller, 0), (callee, 500)], tmp_path / "mixed.ogg")
    assert duration == 2500
    samples = decode_ogg(tmp_path / "mixed.ogg")
    assert len(samples) == 2500 * 48
    # Only the caller in the first half second, only the callee in the last.
    assert abs(dominant_frequency(samples[: 400 * 48]) - 440) < 10
    assert abs(dominant_frequency(samples[-400 * 48 :]) - 660) < 10


def test_a_single_leg_mixes_to_itself(tmp_path: Path) -> None:
    only = leg(tmp_path / "caller.ogg", 440, 50)
    assert mix_legs([(only, 0)], tmp_path / "mixed.ogg") == 1000
    assert abs(dominant_frequency(decode_ogg(tmp_path / "mixed.ogg")) - 440) < 10
