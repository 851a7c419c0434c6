"""Generate static/voice/hold-music.wav: a soft chime melody, made here from sine tones (so it is
ours to ship, no licence to track). 8 kHz mono 16-bit, the telephone's own quality.

    python scripts/make_hold_music.py
"""

import math
import struct
import wave
from pathlib import Path

RATE = 8000
# A slow pentatonic phrase (C major pentatonic), each note with a soft fifth below it.
NOTES = [523.25, 587.33, 659.25, 783.99, 880.00, 783.99, 659.25, 587.33,
         523.25, 659.25, 783.99, 1046.50, 880.00, 783.99, 659.25, 523.25]
NOTE_SECONDS = 0.9
VOLUME = 0.22


def samples():
    for frequency in NOTES:
        count = int(RATE * NOTE_SECONDS)
        for i in range(count):
            t = i / RATE
            envelope = min(1.0, t / 0.04) * math.exp(-2.6 * t)  # quick attack, bell-like decay
            value = math.sin(2 * math.pi * frequency * t) + 0.35 * math.sin(2 * math.pi * frequency * 2 / 3 * t)
            yield int(32767 * VOLUME * envelope * value / 1.35)


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "static" / "voice" / "hold-music.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples()))
    print(target)


if __name__ == "__main__":
    main()
