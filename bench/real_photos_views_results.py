"""The results of ``bench/real_photos.py --views`` (:mod:`bench.real_photos_views`): each candidate's margin over
the plain loop per view and overall, the bar, the JSON's table in Markdown, and the two ways of joining runs:
``merge`` (seeds split between processes) and ``--resume`` (the trainings of an earlier result kept).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

PLAIN = "plain"
#: The default must beat the plain loop by this many points of top-1, on average over the views.
BAR_POINTS = 2.0
#: The settings two results must share to be one benchmark (``merge``, ``--resume``).
SAME_CONFIG = ("img_size", "epochs", "batch_size", "folds", "device")


# -- summary -----------------------------------------------------------------------------------------------

def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def summarize(runs: list[dict[str, Any]], views: list[str], candidates: list[str]) -> dict[str, Any]:
    """Per view and candidate: top-1 mean ± sd over seeds and the margin over the plain loop (points, over the
    seeds both ran); per
    candidate: the mean of its margins over the views that have both, the worst view, and where it loses."""
    per_view: dict[str, dict[str, Any]] = {}
    for view in views:
        row = {}
        for cand in candidates:
            vals = [r["top1"] for r in runs if r["view"] == view and r["candidate"] == cand]
            if vals:
                row[cand] = _stats(vals)
        # The margin pairs seeds: of a run cut short, only the seeds both the candidate and the loop finished.
        plain = {r["seed"]: r["top1"] for r in runs if r["view"] == view and r["candidate"] == PLAIN}
        for cand, s in row.items():
            mine = {r["seed"]: r["top1"] for r in runs if r["view"] == view and r["candidate"] == cand}
            paired = sorted(set(mine) & set(plain))
            if cand != PLAIN and paired:
                s["margin_points"] = round(statistics.fmean(mine[k] - plain[k] for k in paired) * 100, 2)
                s["margin_seeds"] = paired
        per_view[view] = row
    overall = {}
    for cand in candidates:
        if cand == PLAIN:
            continue
        margins = {v: per_view[v][cand]["margin_points"] for v in views if "margin_points" in per_view[v].get(cand, {})}
        if margins:
            overall[cand] = {"margin_points": round(statistics.fmean(margins.values()), 2),
                             "worst_view": min(margins, key=margins.get), "worst_margin": min(margins.values()),
                             "loses_on": sorted(v for v, m in margins.items() if m < 0), "views": len(margins)}
    return {"per_view": per_view, "overall": overall}


def verdict(summary: dict[str, Any], views: list[str]) -> dict[str, Any]:
    """Whether each candidate meets the bar on every view scored: no view lost, >= BAR_POINTS overall."""
    out = {}
    for cand, o in summary["overall"].items():
        out[cand] = {"all_views": o["views"] == len(views), "no_view_lost": not o["loses_on"],
                     "meets_bar": o["views"] == len(views) and not o["loses_on"] and o["margin_points"] >= BAR_POINTS}
    return out


def write_markdown(result: dict[str, Any], path: Path) -> None:
    c = result["config"]
    cands = [n for n in result["candidates"]]
    lines = [f"# Real photos, views (`bench/real_photos.py --views {c['views']}`)", "",
             ("**Partial**: " if not result["complete"] else "") +
             f"{c['img_size']} px, {c['epochs']} epochs, batch {c['batch_size']}, seeds {c['seeds']}, {c['device']}, "
             f"1 torch thread per training, {c['jobs']} at once; ResNet-18 from scratch for every candidate. "
             "Top-1 of the best epoch on the view's held-out photos, mean ± sd over seeds (n: seeds finished, where "
             "fewer than asked); in brackets the margin over the plain loop in points, over the seeds both finished.",
             "",
             f"Photos: {result['grouping']['photos']} in {result['grouping']['groups']} photo sets "
             f"({result['grouping']['singletons']} single photos; largest sets: "
             + ", ".join(str(g["size"]) for g in result["grouping"]["largest"]) + ").", "",
             "| view | train / held-out | " + " | ".join(cands) + " |",
             "|---|---|" + "---|" * len(cands)]
    for v in result["views"]:
        row = result["summary"]["per_view"].get(v["name"], {})
        cells = []
        for cand in cands:
            s = row.get(cand)
            if not s:
                cells.append("—")
                continue
            cell = f"{s['mean'] * 100:.1f} ± {s['sd'] * 100:.1f}"
            if "margin_points" in s:
                cell += f" ({s['margin_points']:+.1f})"
            cells.append(cell + (f" n={s['n']}" if s["n"] != c["seeds"] else ""))
        lines.append(f"| {v['name']} | {v['train']} / {v['held_out']} | " + " | ".join(cells) + " |")
    overall = result["summary"]["overall"]
    lines.append("| **overall margin** (mean over views) | | — | "
                 + " | ".join(f"**{overall[cn]['margin_points']:+.1f}** (worst {overall[cn]['worst_margin']:+.1f})"
                              if cn in overall else "—" for cn in cands[1:]) + " |")
    lines += ["", "Candidates (fixed before any view was scored):", ""]
    lines += [f"- `{name}`: {info['why']}" + (f"; options {info['options']}" if info["options"] else "")
              for name, info in result["candidates"].items()]
    lines += ["", f"Bar (issue 33): no view lost, and >= {BAR_POINTS:+.0f} points overall. "
              + "; ".join(f"`{k}`: {'meets it' if v['meets_bar'] else 'does not meet it'}"
                          for k, v in result["verdict"].items()), ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def print_table(result: dict[str, Any]) -> None:
    cands = list(result["candidates"])
    print(f"{'view':<14}" + "".join(f"{n:>24}" for n in cands))
    for v in result["views"]:
        row = result["summary"]["per_view"].get(v["name"], {})
        cells = []
        for n in cands:
            s = row.get(n)
            cells.append("—" if not s else f"{s['mean'] * 100:.1f}±{s['sd'] * 100:.1f}"
                         + (f" ({s['margin_points']:+.1f})" if "margin_points" in s else ""))
        print(f"{v['name']:<14}" + "".join(f"{x:>24}" for x in cells))
    overall = result["summary"]["overall"]
    print(f"{'overall':<14}{'':>24}" + "".join(f"{overall[n]['margin_points']:>+24.1f}" if n in overall else f"{'—':>24}"
                                           for n in cands[1:]))


def merge(out: Path, inputs: list[Path]) -> dict[str, Any]:
    """One result from several runs of the same views (seeds split between processes with ``--first-seed``):
    their trainings together, summaries recomputed; complete only if every input is. Writes JSON and table.

    Raises:
        SystemExit: inputs with other views, candidates, image size or epochs (not one benchmark).
    """
    parts = [json.loads(Path(p).read_text()) for p in inputs]
    base = parts[0]
    for p, part in zip(inputs, parts):
        if any(part["config"][k] != base["config"][k] for k in SAME_CONFIG) or part["views"] != base["views"] \
                or list(part["candidates"]) != list(base["candidates"]):
            raise SystemExit(f"merge: {p} is not the same benchmark as {inputs[0]} ({', '.join(SAME_CONFIG)}, views, "
                             f"candidates must match)")
    runs = {(r["view"], r["candidate"], r["seed"]): r for part in parts for r in part["runs"]}
    seeds = sorted({r["seed"] for r in runs.values()})
    views, cands = [v["name"] for v in base["views"]], list(base["candidates"])
    summary = summarize(list(runs.values()), views, cands)
    result = {**base, "complete": all(part["complete"] for part in parts),
              "config": {**base["config"], "seeds": len(seeds), "first_seed": seeds[0], "merged_from": [
                  str(p) for p in inputs]},
              "runs": sorted(runs.values(), key=lambda r: (r["view"], r["candidate"], r["seed"])),
              "summary": summary, "verdict": verdict(summary, views),
              "seconds": max(part["seconds"] for part in parts)}
    out.write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, out.with_suffix(".md"))
    return result


def resumed_runs(paths: list[Path], args: argparse.Namespace, described: list[dict[str, Any]],
                 cands: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """The trainings of earlier results (``--resume``) that this run asks for, so that they are not run again:
    same photos, image size, epochs, batch, folds and device, and views of the same sizes (the grouping is
    deterministic, so a view of the same name and sizes holds the same photos). Later files win on a repeat.

    Raises:
        SystemExit: a file that is unreadable, not this benchmark, or another configuration (named).
    """
    sizes = {v["name"]: (v["train"], v["held_out"]) for v in described}
    kept: dict[tuple[str, str, int], dict[str, Any]] = {}
    for path in paths:
        try:
            part = json.loads(Path(path).read_text())
            config = part["config"]
            theirs = {v["name"]: (v["train"], v["held_out"]) for v in part["views"]}
            part_runs = part["runs"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"--resume {path}: not a views result ({type(exc).__name__}: {exc})") from None
        differs = [f"{k} {config.get(k)} (this run {getattr(args, k)})" for k in SAME_CONFIG if config.get(k) != getattr(args, k)]
        if Path(config.get("data", "")).resolve() != Path(args.data).resolve():
            differs.append(f"data {config.get('data')} (this run {args.data})")
        differs += [f"view {n} {theirs[n][0]}/{theirs[n][1]} photos (this run {sizes[n][0]}/{sizes[n][1]})"
                    for n in theirs if n in sizes and theirs[n] != sizes[n]]
        if differs:
            raise SystemExit(f"--resume {path}: another configuration: {'; '.join(differs)}")
        for r in part_runs:
            if r["view"] in sizes and r["candidate"] in cands and r["seed"] in seeds:
                kept[(r["view"], r["candidate"], r["seed"])] = r
    return list(kept.values())
