"""Citation quality of ``POST /v1/answer`` on SciFact claims (validation split): is the cited abstract a
gold evidence document, and does the answer abstain on NOT_ENOUGH_INFO claims?

Each claim is asked as a question to a real Socle server (default chat model SmolLM2-135M-Instruct, in
process; MiniLM embeddings) over the SciFact corpus ingested through the API. Reported:

- context recall: the claim's evidence abstract is among the sources given to the model;
- citation precision: citations (markers kept after checking) that point at an evidence abstract;
- answers citing evidence: answers to claims with evidence whose citations include an evidence abstract;
- removed markers: markers naming no given source, removed by Socle (per answer);
- abstention: NOT_ENOUGH_INFO claims answered "not found", and claims with evidence wrongly so.

    python bench/citations.py [--claims 100] [--max-docs 1500] [--model NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line  # noqa: E402
from _kb import DATA, client, load_beir, socle_server, upload_all  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--max-docs", type=int, default=None, help="Corpus subset: cited + random others.")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    print(machine_line())
    claims = [json.loads(line) for line in (DATA / "qa" / "scifact-claims" / "validation.jsonl").open()]
    claims = claims[: args.claims]
    corpus = load_beir(DATA / "retrieval" / "scifact").corpus
    if args.max_docs is not None:
        import random

        cited = {d for c in claims for d in c["cited_doc_ids"]} & set(corpus)
        others = sorted(set(corpus) - cited)
        keep = cited | set(random.Random(7).sample(others, max(0, args.max_docs - len(cited))))
        corpus = {d: v for d, v in corpus.items() if d in keep}
        print(f"SUBSET corpus: {len(corpus)} abstracts (every cited one + random others)")
    files = {f"{d}.md": f"# {v['title']}\n\n{v['text']}".encode() for d, v in corpus.items()}
    with tempfile.TemporaryDirectory(prefix="socle-bench-citations-") as work:
        with socle_server(Path(work), chat=True) as server, client(server) as http:
            collection = http.post("/collections", json={"name": "scifact"}).json()["id"]
            print(f"ingested {len(files)} abstracts in {upload_all(http, collection, files):.0f} s")
            names = "evidence nei context_hit answers_citing citing_gold citations gold_citations removed"
            stats = dict.fromkeys((*names.split(), "nei_abstained", "evidence_abstained"), 0)
            started = time.perf_counter()
            for claim in claims:
                gold = {e["doc_id"] for e in claim["evidence"]}
                body = {"question": claim["claim"], "collections": [collection], "max_tokens": 96, "seed": 1}
                if args.model:
                    body["model"] = args.model
                response = http.post("/answer", json=body)
                response.raise_for_status()
                answer = response.json()
                cited = {c["filename"].rsplit(".", 1)[0] for c in answer["citations"]}
                sources = {s["filename"].rsplit(".", 1)[0] for s in answer["sources"]}
                stats["removed"] += answer["removed_citations"]
                stats["citations"] += len(answer["citations"])
                stats["gold_citations"] += len(cited & gold) if gold else 0
                if gold:
                    stats["evidence"] += 1
                    stats["context_hit"] += bool(sources & gold)
                    stats["answers_citing"] += bool(cited)
                    stats["citing_gold"] += bool(cited & gold)
                    stats["evidence_abstained"] += answer["abstained"]
                else:
                    stats["nei"] += 1
                    stats["nei_abstained"] += answer["abstained"]
            seconds = time.perf_counter() - started
    n, evidence, nei = len(claims), max(1, stats["evidence"]), max(1, stats["nei"])
    print(
        f"\n{n} claims ({stats['evidence']} with evidence, {stats['nei']} NOT_ENOUGH_INFO), "
        f"{seconds / n:.1f} s/answer"
    )
    rows = [
        ("context recall (evidence among the sources given)", stats["context_hit"] / evidence),
        ("answers with at least one citation", stats["answers_citing"] / evidence),
        ("answers citing an evidence abstract", stats["citing_gold"] / evidence),
        ("citation precision (citations of evidence)", stats["gold_citations"] / max(1, stats["citations"])),
        ("markers removed per answer (naming no source)", stats["removed"] / n),
        ("NOT_ENOUGH_INFO claims abstained", stats["nei_abstained"] / nei),
        ("claims with evidence wrongly abstained", stats["evidence_abstained"] / evidence),
    ]
    for label, value in rows:
        print(f"{label:<50} {value:.3f}")


if __name__ == "__main__":
    main()
