"""Inversion quality on held-out store texts: store lookup vs the inverter vs inverter + correction.

The texts are store concepts the inverter never trained on (id % inversion.held_out_every
== 0, at most inverter.max_tokens tokens). For lookup they are removed from the store
first (otherwise lookup finds each text itself): the peer is the nearest *other*
concept, brute force. A fourth row starts the correction from that lookup text when it
is closer than the inverter's first pass (what `meqg decode` does for store misses).
Measures (vec2text paper's): exact match (case-folded: the
tokenizer is uncased), token F1, corpus BLEU-4, mean cosine between the target vector
and the re-embedded output, and seconds per text.

    python bench/inversion.py --run RUN [--texts 200] [--steps 4] [--candidates 4] [--beam 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import meqg_mlx  # noqa: E402,F401  (sets up BLAS for when mlx is first imported)
import numpy as np  # noqa: E402
from meqg_mlx.inversion.corrector import Corrector  # noqa: E402
from meqg_mlx.inversion.decode import RunDecoder  # noqa: E402
from meqg_mlx.inversion.quality import corpus_bleu, exact_match, token_f1  # noqa: E402
from meqg_mlx.inversion.training import split_examples  # noqa: E402


def lookup_without(decoder: RunDecoder, vectors: np.ndarray, removed: set[int]) -> list[str]:
    """Each vector's nearest store concept that is not one of the removed (held-out) ones."""
    ids, matrix = decoder.store.all_vectors()
    keep = ~np.isin(ids, list(removed))
    ids, matrix = ids[keep], matrix[keep]
    best = ids[(vectors @ matrix.T).argmax(axis=1)]
    rows = {r["concept_id"]: r["text"] for r in decoder.store.get(sorted(set(best.tolist())))}
    return [rows[int(i)] for i in best]


def trained_for(run: Path, step: int) -> str:
    """How long the inverter's telemetry says its training took to reach `step` (empty when unknown)."""
    from meqg_mlx.runs import RunDir
    from meqg_mlx.telemetry import read_telemetry

    path = RunDir(run).inverter.telemetry_path
    records = read_telemetry(path)[0] if path.exists() else []
    seconds = [r["seconds"] for r in records if r.get("event") == "step" and r.get("step") == step and "seconds" in r]
    return f" ({seconds[-1] / 60:.1f} min of training)" if seconds else ""


def measure(
    name: str, outputs: list[str], references: list[str], targets: np.ndarray, seconds: float, decoder: RunDecoder
) -> dict:
    written = [i for i, t in enumerate(outputs) if t.strip()]
    cosines = np.full(len(outputs), -1.0)
    cosines[written] = np.einsum("ij,ij->i", decoder.embedder.encode([outputs[i] for i in written]), targets[written])
    return {
        "method": name,
        "exact_match": float(np.mean([exact_match(o, r) for o, r in zip(outputs, references)])),
        "token_f1": float(np.mean([token_f1(o, r) for o, r in zip(outputs, references)])),
        "bleu": corpus_bleu(outputs, references),
        "mean_cosine": float(cosines.mean()),
        "cosine_ge_0.95": float((cosines >= 0.95).mean()),
        "seconds_per_text": seconds / len(outputs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run directory with an inverter (meqg inverter train)")
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--steps", type=int, default=4, help="correction steps")
    parser.add_argument("--candidates", type=int, default=None, help="[default: config inversion.candidates]")
    parser.add_argument("--beam", type=int, default=None, help="hypotheses kept per step [default: inversion.beam]")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and examples here")
    args = parser.parse_args()

    decoder = RunDecoder.from_run(args.run)
    if decoder.corrector is None:
        raise SystemExit(f"no inverter in {args.run}: run `meqg inverter train --store ... --run {args.run}` first")
    inverter = decoder.corrector.inverter
    inversion = decoder.inversion
    if args.candidates is not None:
        inversion.candidates = args.candidates
    if args.beam is not None:
        inversion.beam = args.beam
    _, held = split_examples(
        decoder.store, inverter.vocab.tokenizer_path, inverter.model.args.max_tokens, inverter.meta["held_out_every"]
    )
    pick = np.random.default_rng(0).permutation(len(held.ids))[: args.texts]
    references, targets = [held.texts[i] for i in pick], held.vectors[pick]
    print(
        f"{len(references)} held-out texts (of {len(held.ids)}) from {decoder.store.uri}; inverter step "
        f"{inverter.meta['step']}{trained_for(args.run, inverter.meta['step'])}, "
        f"{inverter.meta['trained_texts']} training texts; "
        f"{args.steps} correction steps x {inversion.candidates} candidates x beam {inversion.beam}",
        flush=True,
    )

    rows, outputs = [], {}
    tick = time.perf_counter()
    outputs["lookup"] = lookup_without(decoder, targets, set(held.ids.tolist()))
    rows.append(
        measure("lookup (text removed)", outputs["lookup"], references, targets, time.perf_counter() - tick, decoder)
    )
    corrector = Corrector(inverter, decoder.embedder, inversion)
    tick = time.perf_counter()
    first = corrector.invert(targets, 0)
    rows.append(measure("inverter", [r.text for r in first], references, targets, time.perf_counter() - tick, decoder))
    tick = time.perf_counter()
    corrected = corrector.invert(
        targets, args.steps, progress=lambda stage, done, total: print(f"  {stage} {done}/{total}", flush=True)
    )
    rows.append(
        measure(
            f"inverter + {args.steps} corrections",
            [r.text for r in corrected],
            references,
            targets,
            time.perf_counter() - tick,
            decoder,
        )
    )
    tick = time.perf_counter()
    seeded = corrector.invert(targets, args.steps, seed_texts=outputs["lookup"])
    rows.append(
        measure(
            f"lookup-seeded + {args.steps} corr.",
            [r.text for r in seeded],
            references,
            targets,
            time.perf_counter() - tick + rows[0]["seconds_per_text"] * len(targets),
            decoder,
        )
    )

    print(f"{'method':<28}{'exact':>8}{'tok F1':>8}{'BLEU':>7}{'mean cos':>10}{'cos>=.95':>10}{'s/text':>9}")
    for r in rows:
        print(
            f"{r['method']:<28}{r['exact_match']:>8.1%}{r['token_f1']:>8.3f}{r['bleu']:>7.1f}"
            f"{r['mean_cosine']:>10.3f}{r['cosine_ge_0.95']:>10.1%}{r['seconds_per_text']:>9.3f}"
        )
    print(
        "aim: mean cosine >= 0.95 after correction; vec2text (T5-base, GTR, days of training): "
        "0.91 cosine / 31.9 BLEU in one pass"
    )
    print("examples (reference | inverter | corrected | lookup-seeded, its cosine):")
    for i in range(min(8, len(references))):
        print(
            f"  {references[i]!r}\n    | {first[i].text!r}\n    | {corrected[i].text!r}  {corrected[i].cosine:.3f}"
            f"\n    | {seeded[i].text!r}  {seeded[i].cosine:.3f}"
        )
    if args.json:
        examples = [
            {
                "reference": ref,
                "lookup": look,
                "inverter": f.text,
                "corrected": c.text,
                "cosine": c.cosine,
                "seeded": sd.text,
                "seeded_cosine": sd.cosine,
            }
            for ref, look, f, c, sd in zip(references, outputs["lookup"], first, corrected, seeded)
        ]
        args.json.write_text(json.dumps({"rows": rows, "examples": examples}, indent=1))


if __name__ == "__main__":
    main()
