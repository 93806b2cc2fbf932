import numpy as np
import pytest

from ivr.audio.codecs import Framer, StreamResampler, codec_for, frame_bytes, resample, rms


def tone(freq: float, seconds: float, rate: int, amplitude: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16).tobytes()


@pytest.mark.parametrize("encoding", ["audio/x-mulaw", "audio/x-alaw"])
def test_g711_round_trip_keeps_the_signal(encoding):
    codec = codec_for(encoding, 8000)
    pcm = tone(440, 0.2, 8000)
    encoded = codec.encode(pcm)
    assert len(encoded) == len(pcm) // 2  # one byte per sample
    decoded = np.frombuffer(codec.decode(encoded), dtype=np.int16).astype(float)
    original = np.frombuffer(pcm, dtype=np.int16).astype(float)
    snr = 10 * np.log10(np.sum(original**2) / np.sum((original - decoded) ** 2))
    assert snr > 30  # G.711 gives ~38 dB on a mid-level tone


def test_pcm16_is_passed_through_and_checked():
    codec = codec_for("audio/l16", 16000)
    assert codec.decode(b"\x01\x02") == b"\x01\x02"
    with pytest.raises(ValueError, match="odd number of bytes"):
        codec.decode(b"\x01")


@pytest.mark.parametrize(
    "encoding, rate, message",
    [
        ("audio/opus", 8000, "unsupported encoding"),
        ("audio/x-mulaw", 16000, "defined at 8000 Hz"),
        ("audio/l16", 44100, "unsupported sample rate"),
    ],
)
def test_bad_codecs_are_refused_with_reason(encoding, rate, message):
    with pytest.raises(ValueError, match=message):
        codec_for(encoding, rate)


def test_streamed_resampling_matches_whole_buffer_and_keeps_pitch():
    src = tone(300, 1.0, 8000)
    resampler = StreamResampler(8000, 16000)
    chunks = [resampler.process(src[i : i + 320]) for i in range(0, len(src), 320)]
    chunks.append(resampler.process(b"", last=True))
    out = np.frombuffer(b"".join(chunks), dtype=np.int16).astype(float)
    assert abs(len(out) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / len(out) - 300) < 3  # still a 300 Hz tone
    assert rms(b"".join(chunks)) > 0.6 * rms(src)


def test_one_shot_resample_duration():
    out = resample(tone(200, 0.5, 22050), 22050, 8000)
    assert abs(len(out) // 2 - 4000) <= 2


def test_framer_carries_remainder_and_pads_tail():
    framer = Framer(frame_bytes(8000))  # 320 bytes
    assert framer.push(b"\x01" * 500) == [b"\x01" * 320]
    frames = framer.push(b"\x02" * 200)
    assert frames == [b"\x01" * 180 + b"\x02" * 140]
    tail = framer.flush()
    assert tail == b"\x02" * 60 + b"\x00" * 260
    assert framer.flush() == b""
