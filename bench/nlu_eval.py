"""NLU accuracy on the held-out sets: intents, FAQ topics and entities, per language.

Trains an NLU-only model from config.yml + nlu/ (or uses --model), parses every
example of tests/data/nlu_heldout_<lang>.yml and reports:

* intent accuracy per language. An FAQ question counts as correct only when
  the whole `faq/<topic>` is right (DIET says `faq` AND the ResponseSelector
  picks the topic). `nlu_fallback` (FallbackClassifier) counts as wrong: it is
  what the dialog would see. The accuracy of the top non-fallback intent is
  reported as well.
* per intent: examples, correct, and every error with the predicted label and
  confidence; the confusion pairs.
* entities: precision / recall / F1 per entity type and micro-averaged, an
  entity being correct when type, character span and value (after synonym
  mapping) match exactly. Also micro F1 on type + span alone, which shows how
  much is lost to values the synonyms do not map.

Usage:
  .venv/bin/python bench/nlu_eval.py                       # train, then evaluate
  .venv/bin/python bench/nlu_eval.py --model /tmp/nlu-models/nlu-x.tar.gz
  .venv/bin/python bench/nlu_eval.py --langs de --out /tmp/nlu.json --min-accuracy 0.95

Writes JSON to --out (default bench/results/nlu_eval.json) with the machine
facts, the command, training time and all numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ivr.dialog.project import training_env

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
os.environ.setdefault("LOG_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("de", "en")
FALLBACK = "nlu_fallback"


# --------------------------------------------------------------------------- machine


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def machine_facts() -> dict[str, Any]:
    cpu_model = None
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    facts = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model or platform.processor(),
        "cgroup_cpu_max": _read("/sys/fs/cgroup/cpu.max"),
        "mem_total_mb": round(mem_kb / 1024) if mem_kb else None,
        "loadavg": _read("/proc/loadavg"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import rasa

        facts["rasa"] = rasa.__version__
    except Exception:  # pragma: no cover
        pass
    try:
        facts["git_commit"] = (
            subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
            or None
        )
    except OSError:
        pass
    return facts


def machine_busy_s() -> float | None:
    """CPU seconds all processes of the machine have used so far (/proc/stat)."""
    line = (_read("/proc/stat") or "").splitlines()[:1]
    if not line or not line[0].startswith("cpu "):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in line[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- training


def train(config: Path, nlu: Path, out_dir: Path, use_cache: bool = False) -> tuple[Path, dict[str, Any]]:
    """`rasa train nlu` into out_dir, timed.

    Rasa's training cache (.rasa/cache) is off unless use_cache: a cache hit
    (same data and config as an earlier training) would skip the training and
    make the time meaningless.
    """
    env = training_env()
    if not use_cache:
        env["RASA_MAX_CACHE_SIZE"] = "0"
    cmd = [
        sys.executable,
        "-m",
        "rasa",
        "train",
        "nlu",
        "--config",
        str(config),
        "--nlu",
        str(nlu),
        "--out",
        str(out_dir),
        "--fixed-model-name",
        "nlu-eval",
    ]
    print("training:", " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = machine_busy_s()
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    busy_after = machine_busy_s()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"rasa train nlu failed ({proc.returncode})")
    models = sorted(out_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not models:
        raise SystemExit(f"no model written to {out_dir}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    machine = busy_after - busy_before if busy_before is not None and busy_after is not None else None
    return models[-1], {
        "command": cmd,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_cores_used": round(cpu / wall, 2) if wall else None,
        # other jobs on the machine during training (they slow it down)
        "other_processes_cpu_cores": round((machine - cpu) / wall, 2) if machine is not None and wall else None,
        "rasa_training_cache": "used" if use_cache else "disabled (RASA_MAX_CACHE_SIZE=0)",
    }


# --------------------------------------------------------------------------- data


def load_examples(path: Path):
    from rasa.shared.nlu.training_data.loading import load_data

    return load_data(str(path))


def gold_label(message) -> str:
    return message.get("intent_response_key") or message.get("intent")


def predicted_label(parse: dict[str, Any], skip_fallback: bool = False) -> tuple[str, float]:
    ranking = parse.get("intent_ranking") or [parse.get("intent") or {}]
    top = parse.get("intent") or {}
    if skip_fallback and top.get("name") == FALLBACK:
        top = next((r for r in ranking if r.get("name") != FALLBACK), top)
    name, confidence = top.get("name"), float(top.get("confidence") or 0.0)
    if name == "faq":
        selected = ((parse.get("response_selector") or {}).get("faq") or {}).get("response") or {}
        name = selected.get("intent_response_key") or "faq/?"
    return name or "?", confidence


def entity_set(entities, synonyms: dict[str, str]) -> set:
    result = set()
    for e in entities or []:
        value = str(e.get("value"))
        value = synonyms.get(value.lower(), value)
        result.add((e["entity"], int(e["start"]), int(e["end"]), value))
    return result


def prf(tp: int, n_pred: int, n_gold: int) -> dict[str, Any]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f, 4),
        "tp": tp,
        "predicted": n_pred,
        "gold": n_gold,
    }


# --------------------------------------------------------------------------- evaluation


async def evaluate_language(agent, path: Path, synonyms: dict[str, str]) -> dict[str, Any]:
    data = load_examples(path)
    per_intent: dict[str, dict[str, Any]] = defaultdict(lambda: {"n": 0, "correct": 0, "errors": []})
    confusions: Counter = Counter()
    ent_tp, ent_pred, ent_gold = Counter(), Counter(), Counter()
    span_tp = span_pred = span_gold = 0
    entity_errors: list[dict[str, Any]] = []
    correct = correct_no_fb = fallbacks = 0
    latencies: list[float] = []

    examples = [m for m in data.training_examples if m.get("text")]
    for message in examples:
        text = message.get("text")
        gold = gold_label(message)
        start = time.perf_counter()
        parse = await agent.parse_message(text)
        latencies.append((time.perf_counter() - start) * 1000)

        pred, confidence = predicted_label(parse)
        pred_nofb, _ = predicted_label(parse, skip_fallback=True)
        stats = per_intent[gold]
        stats["n"] += 1
        if pred == FALLBACK:
            fallbacks += 1
        if pred == gold:
            correct += 1
            stats["correct"] += 1
        else:
            confusions[(gold, pred)] += 1
            stats["errors"].append(
                {"text": text, "predicted": pred, "confidence": round(confidence, 3), "without_fallback": pred_nofb}
            )
        if pred_nofb == gold:
            correct_no_fb += 1

        gold_entities = entity_set(message.get("entities"), synonyms)
        pred_entities = entity_set(parse.get("entities"), {})  # EntitySynonymMapper already ran
        for e in pred_entities:
            ent_pred[e[0]] += 1
        for e in gold_entities:
            ent_gold[e[0]] += 1
        for e in gold_entities & pred_entities:
            ent_tp[e[0]] += 1
        gold_spans = {e[:3] for e in gold_entities}
        pred_spans = {e[:3] for e in pred_entities}
        span_tp += len(gold_spans & pred_spans)
        span_pred += len(pred_spans)
        span_gold += len(gold_spans)
        if gold_entities != pred_entities:

            def show(es, text=text):
                return sorted(f"{t}:{text[s:e]!r}={v}" for t, s, e, v in es)

            entity_errors.append(
                {
                    "text": text,
                    "missing": show(gold_entities - pred_entities),
                    "spurious": show(pred_entities - gold_entities),
                }
            )

    n = len(examples)
    types = sorted(set(ent_gold) | set(ent_pred))
    latencies.sort()
    return {
        "heldout_file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "examples": n,
        "intent_accuracy": round(correct / n, 4) if n else 0.0,
        "intent_accuracy_without_fallback": round(correct_no_fb / n, 4) if n else 0.0,
        "correct": correct,
        "nlu_fallback": fallbacks,
        "per_intent": {k: {**v, "accuracy": round(v["correct"] / v["n"], 4)} for k, v in sorted(per_intent.items())},
        "confusions": [{"gold": g, "predicted": p, "count": c} for (g, p), c in confusions.most_common()],
        "entities": {
            "per_type": {t: prf(ent_tp[t], ent_pred[t], ent_gold[t]) for t in types},
            "micro": prf(sum(ent_tp.values()), sum(ent_pred.values()), sum(ent_gold.values())),
            "micro_span_only": prf(span_tp, span_pred, span_gold),
            "errors": entity_errors,
        },
        "parse_ms": {
            "mean": round(sum(latencies) / n, 1) if n else None,
            "p95": round(latencies[min(n - 1, int(0.95 * (n - 1) + 0.5))], 1) if n else None,
        },
    }


def print_report(results: dict[str, Any], verbose: bool) -> None:
    for lang, r in results["languages"].items():
        print(f"\n=== {lang}: {r['heldout_file']} ({r['examples']} examples) ===")
        print(
            f"intent accuracy {r['intent_accuracy']:.1%}  ({r['correct']}/{r['examples']}; "
            f"{r['nlu_fallback']} nlu_fallback; without fallback {r['intent_accuracy_without_fallback']:.1%})"
        )
        print(f"{'intent':<30} {'n':>4} {'ok':>4} {'acc':>7}  errors")
        for intent, s in r["per_intent"].items():
            errs = ", ".join(f"{e['predicted']}" for e in s["errors"])
            print(f"{intent:<30} {s['n']:>4} {s['correct']:>4} {s['accuracy']:>7.1%}  {errs}")
        if r["confusions"]:
            print("confusions (gold -> predicted: count):")
            for c in r["confusions"]:
                print(f"  {c['gold']} -> {c['predicted']}: {c['count']}")
        print("errors:")
        for intent, s in r["per_intent"].items():
            for e in s["errors"]:
                print(f"  [{intent} -> {e['predicted']} {e['confidence']:.2f}] {e['text']}")
        ents = r["entities"]
        print(f"{'entity':<16} {'P':>6} {'R':>6} {'F1':>6} {'tp':>4} {'pred':>5} {'gold':>5}")
        for t, m in [*ents["per_type"].items(), ("micro", ents["micro"]), ("span only", ents["micro_span_only"])]:
            print(
                f"{t:<16} {m['precision']:>6.1%} {m['recall']:>6.1%} {m['f1']:>6.1%} "
                f"{m['tp']:>4} {m['predicted']:>5} {m['gold']:>5}"
            )
        if verbose:
            for e in ents["errors"]:
                print(f"  entities: {e['text']!r} missing={e['missing']} spurious={e['spurious']}")
        print(f"parse latency: mean {r['parse_ms']['mean']} ms, p95 {r['parse_ms']['p95']} ms")
    if results.get("training"):
        t = results["training"]
        print(
            f"\ntraining: {t['wall_s']} s wall, {t['cpu_s']} s CPU ({t['cpu_cores_used']} cores; "
            f"other processes meanwhile: {t['other_processes_cpu_cores']} cores)"
        )


def training_counts(nlu: Path) -> dict[str, Any]:
    counts = {}
    for lang in LANGUAGES:
        folder = nlu / lang
        if folder.is_dir():
            data = load_examples(folder)
            counts[lang] = {
                "examples": len(data.intent_examples),
                "entities": sum(len(m.get("entities") or []) for m in data.training_examples),
            }
    return counts


def quiet_rasa() -> None:
    """Only warnings and errors from Rasa / TensorFlow (no per-message debug lines)."""
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    configure_logging_and_warnings(logging.WARNING)
    configure_structlog(logging.WARNING)
    # an NLU-only model has no domain responses; the selected key is all we need
    warnings.filterwarnings("ignore", message=".*Unable to fetch responses.*")


async def main_async(args) -> int:
    quiet_rasa()
    config, nlu = Path(args.config).resolve(), Path(args.nlu).resolve()
    facts = machine_facts()
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": facts,
        "config": str(config),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    tmp = None
    if args.model:
        model = Path(args.model)
        results["training"] = None
    else:
        tmp = Path(tempfile.mkdtemp(prefix="nlu-eval-"))
        model, results["training"] = train(config, nlu, tmp, use_cache=args.use_cache)
    results["model"] = str(model)
    results["training_data"] = training_counts(nlu)
    if args.model:
        results["training_data_note"] = f"counted in {nlu} when evaluating; --model may have been trained on other data"

    from rasa.core.agent import Agent

    agent = Agent.load(str(model))
    synonyms = {k.lower(): v for k, v in load_examples(nlu).entity_synonyms.items()}

    results["languages"] = {}
    for lang in args.langs.split(","):
        path = Path(args.heldout.format(lang=lang))
        if not path.is_absolute():
            path = ROOT / path
        results["languages"][lang] = await evaluate_language(agent, path, synonyms)
    results["machine"]["loadavg_end"] = _read("/proc/loadavg")

    print_report(results, args.verbose)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")

    if tmp and args.keep_model:
        Path(args.keep_model).mkdir(parents=True, exist_ok=True)
        shutil.copy2(model, args.keep_model)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.min_accuracy is not None:
        low = {
            lang: r["intent_accuracy"]
            for lang, r in results["languages"].items()
            if r["intent_accuracy"] < args.min_accuracy
        }
        if low:
            print(f"intent accuracy below {args.min_accuracy:.0%}: {low}")
            return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="evaluate this model (.tar.gz) instead of training one")
    parser.add_argument("--config", default=str(ROOT / "config.yml"))
    parser.add_argument("--nlu", default=str(ROOT / "nlu"), help="NLU training data (folder)")
    parser.add_argument("--heldout", default="tests/data/nlu_heldout_{lang}.yml")
    parser.add_argument("--langs", default=",".join(LANGUAGES))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "nlu_eval.json"))
    parser.add_argument(
        "--use-cache",
        action="store_true",
        help="let rasa reuse .rasa/cache (faster, but the training time is then meaningless)",
    )
    parser.add_argument("--keep-model", metavar="DIR", help="copy the trained model into DIR")
    parser.add_argument("--min-accuracy", type=float, help="exit 1 if a language's intent accuracy is lower")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list entity errors")
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
