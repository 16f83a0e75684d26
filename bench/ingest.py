"""Ingestion: parse and chunk speed over shared/data/documents, and parse quality against docling's
ground truth, with markitdown (``pip install socle[bench]``) measured in the same run as the peer.

* **Speed** -- every file under ``documents/`` (ground-truth folders excluded) is parsed and chunked
  (the defaults: 254 MiniLM tokens, 32 overlap). Figures: PDF pages/s (the pages of the PDFs over the
  time spent on PDFs), documents/s and chunks/s over everything, and the peak RSS of the process. The
  peer converts the same files to Markdown (no chunking: its time is parse-only, so the ratio flatters
  it).
* **Quality** -- each docling test source that has a ground-truth Markdown file is parsed by Socle (its
  blocks' text joined) and by markitdown; both texts and the ground truth are reduced to lower-case word
  tokens (Markdown syntax and table rulers dropped). Per format: token F1 (bag of words: does the text
  contain the right words, whatever the order) and sequence similarity (difflib ratio on the token
  sequences, capped at 20,000 tokens: is the reading order right). A file a parser refuses or fails on
  scores 0.

Usage::

    python bench/ingest.py [--documents ../shared/data/documents] [--quick] [--no-peer]

``--quick`` skips the files over 2 MB in the speed part (the 619- and 400-page PDFs, the 872-page DOCX).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import re
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine_line  # noqa: E402
from socle.knowledge.ingest import IngestError, chunk, default_tokenizer, parse  # noqa: E402

_TOKEN = re.compile(r"\w+", re.UNICODE)
_MAX_SEQ = 20_000


def find_documents(given: str | None) -> Path:
    if given:
        return Path(given)
    root = Path(__file__).resolve().parents[1]
    for base in (root.parent, root.parent.parent):
        if (base / "shared/data/documents").is_dir():
            return base / "shared/data/documents"
    raise SystemExit("shared/data/documents not found; pass --documents")


def corpus(documents: Path, quick: bool) -> list[Path]:
    files = [
        p
        for p in sorted(documents.rglob("*"))
        if p.is_file() and "groundtruth" not in p.parts and not p.name.endswith((".tsv", ".md.json"))
    ]
    return [p for p in files if not quick or p.stat().st_size <= 2_000_000]


def socle_speed(files: list[Path]) -> dict[str, float]:
    tokenizer = default_tokenizer()
    totals: Counter[str] = Counter()
    pdf_time = 0.0
    start = time.perf_counter()
    for path in files:
        began = time.perf_counter()
        try:
            doc = parse(path, path.name)
            chunks = chunk(
                [b for d in _flatten(doc) for b in d.blocks],
                max_tokens=256,
                overlap_tokens=32,
                tokenizer=tokenizer,
            )
        except IngestError as exc:
            totals[f"status:{type(exc).status}"] += 1
            continue
        totals["documents"] += 1
        totals["chunks"] += len(chunks)
        if doc.mime == "application/pdf":
            totals["pdf_pages"] += doc.pages or 0
            pdf_time += time.perf_counter() - began
    elapsed = time.perf_counter() - start
    return {
        **{k: float(v) for k, v in totals.items()},
        "seconds": elapsed,
        "pdf_seconds": pdf_time,
        "pdf_pages_per_s": totals["pdf_pages"] / pdf_time if pdf_time else 0.0,
        "documents_per_s": totals["documents"] / elapsed,
        "chunks_per_s": totals["chunks"] / elapsed,
    }


def _flatten(doc):  # type: ignore[no-untyped-def]
    yield doc
    for attachment in doc.attachments:
        yield from _flatten(attachment)


def peer_converter() -> Callable[[Path], str] | None:
    try:
        from markitdown import MarkItDown
    except ImportError:
        return None
    converter = MarkItDown(enable_plugins=False)

    def convert(path: Path) -> str:
        with contextlib.redirect_stderr(io.StringIO()):
            return str(converter.convert(str(path)).text_content)

    return convert


def peer_speed(files: list[Path], convert: Callable[[Path], str]) -> dict[str, float]:
    totals: Counter[str] = Counter()
    pdf_time = 0.0
    pdf_pages = _pdf_pages(files)
    start = time.perf_counter()
    for path in files:
        began = time.perf_counter()
        try:
            convert(path)
        except Exception:  # noqa: BLE001 - the peer's failures are counted, not fatal
            totals["failed"] += 1
            continue
        totals["documents"] += 1
        if path in pdf_pages:
            totals["pdf_pages"] += pdf_pages[path]
            pdf_time += time.perf_counter() - began
    elapsed = time.perf_counter() - start
    return {
        **{k: float(v) for k, v in totals.items()},
        "seconds": elapsed,
        "pdf_pages_per_s": totals["pdf_pages"] / pdf_time if pdf_time else 0.0,
        "documents_per_s": totals["documents"] / elapsed,
    }


def _pdf_pages(files: list[Path]) -> dict[Path, int]:
    import pypdfium2 as pdfium

    pages = {}
    for path in files:
        if path.suffix.lower() == ".pdf":
            with contextlib.suppress(Exception):
                document = pdfium.PdfDocument(path)
                pages[path] = len(document)
                document.close()
    return pages


def tokens(text: str) -> list[str]:
    text = re.sub(r"\|\s*-{3,}\s*", " ", text)  # table rulers
    return _TOKEN.findall(text.lower().replace("_", " "))


def f1(candidate: list[str], truth: list[str]) -> float:
    if not candidate or not truth:
        return float(candidate == truth)
    common = sum((Counter(candidate) & Counter(truth)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(candidate), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def similarity(candidate: list[str], truth: list[str]) -> float:
    return difflib.SequenceMatcher(None, candidate[:_MAX_SEQ], truth[:_MAX_SEQ], autojunk=False).ratio()


def ground_truth_pairs(documents: Path) -> list[tuple[str, Path, Path]]:
    pairs = []
    for folder in sorted((documents / "docling/tests/data").iterdir()):
        for source in sorted((folder / "sources").glob("*")):
            for name in (f"{source.name}.md", f"{source.stem}.md"):
                truth = folder / "groundtruth" / name
                if truth.is_file():
                    pairs.append((folder.name, source, truth))
                    break
    return pairs


def socle_text(path: Path) -> str:
    doc = parse(path, path.name)
    return "\n".join(b.text for d in _flatten(doc) for b in d.blocks)


def quality(documents: Path, convert: Callable[[Path], str] | None) -> dict[str, dict[str, list[float]]]:
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for fmt, source, truth_path in ground_truth_pairs(documents):
        truth = tokens(truth_path.read_text(encoding="utf-8", errors="replace"))
        parsers: dict[str, Callable[[Path], str]] = {"socle": socle_text}
        if convert is not None:
            parsers["markitdown"] = convert
        for name, parser in parsers.items():
            try:
                got = tokens(parser(source))
            except Exception:  # noqa: BLE001 - a refusal or a failure scores 0
                got = []
            scores[fmt][f"{name}_f1"].append(f1(got, truth))
            scores[fmt][f"{name}_seq"].append(similarity(got, truth))
    return scores


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    documents = find_documents(args.documents)
    files = corpus(documents, args.quick)
    convert = None if args.no_peer else peer_converter()
    print(f"machine: {machine_line()}")
    print(f"corpus: {len(files)} files under {documents}{' (quick: files <= 2 MB)' if args.quick else ''}")

    ours = socle_speed(files)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\n## Speed (parse + chunk for Socle; parse only for the peer)")
    print(
        f"socle:      {ours['pdf_pages_per_s']:8.1f} PDF pages/s  {ours['documents_per_s']:6.1f} docs/s  "
        f"{ours['chunks_per_s']:7.1f} chunks/s"
    )
    print(
        f"{'':12}{ours['documents']:.0f} parsed, {ours['chunks']:.0f} chunks, "
        f"{ours['pdf_pages']:.0f} PDF pages, {ours['seconds']:.1f} s, peak RSS {peak:.0f} MB"
    )
    refused = {k.split(":")[1]: int(v) for k, v in ours.items() if k.startswith("status:")}
    print(f"            refused with a typed status: {refused}")
    if convert is not None:
        theirs = peer_speed(files, convert)
        print(
            f"markitdown: {theirs['pdf_pages_per_s']:8.1f} PDF pages/s  "
            f"{theirs['documents_per_s']:6.1f} docs/s"
        )
        failed = theirs.get("failed", 0)
        print(
            f"            {theirs['documents']:.0f} converted, {failed:.0f} failed, {theirs['seconds']:.1f} s"
        )
        if theirs["pdf_pages_per_s"]:
            ratio = ours["pdf_pages_per_s"] / theirs["pdf_pages_per_s"]
            print(f"ratio socle/markitdown, PDF pages/s: {ratio:.1f}x")
    print_quality(quality(documents, convert), with_peer=convert is not None)


def print_quality(scores: dict[str, dict[str, list[float]]], *, with_peer: bool) -> None:
    print("\n## Parse quality against docling ground truth (token F1 / sequence similarity)")
    header = f"{'format':8} {'files':>5}  {'socle F1':>8} {'socle seq':>9}"
    print(header + (f"  {'peer F1':>8} {'peer seq':>8}" if with_peer else ""))
    overall: dict[str, list[float]] = defaultdict(list)
    for fmt in sorted(scores):
        print(_quality_line(fmt, scores[fmt], with_peer))
        for key, values in scores[fmt].items():
            overall[key].extend(values)
    print(_quality_line("all", overall, with_peer))


def _quality_line(fmt: str, row: dict[str, list[float]], with_peer: bool) -> str:
    line = f"{fmt:8} {len(row['socle_f1']):5d}  {_mean(row['socle_f1']):8.3f} {_mean(row['socle_seq']):9.3f}"
    if with_peer:
        line += f"  {_mean(row['markitdown_f1']):8.3f} {_mean(row['markitdown_seq']):8.3f}"
    return line


if __name__ == "__main__":
    main()
