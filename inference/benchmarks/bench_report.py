"""inference.bench's report: the summary of its rows (means, speed-ups, score differences), and
what it was measured on (the CPU, its flags that matter, the load average).

The load average is part of every speed figure here: on a machine shared with other work, seconds
measured under load are noise (docs/speed.md, "Measuring it")."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from common.io_utils import atomic_path
from common.video_io import VideoReadError, probe_video

logger = logging.getLogger("inference.bench")

STAGES = ("decode", "detect", "classify")
MODE_NAMES = ("baseline", "exact", "fast", "fast-fp32")
# (mode, reference): the score differences reported
COMPARED = (("exact", "baseline"), ("fast", "exact"), ("fast-fp32", "exact"), ("fast", "fast-fp32"))


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system does not say)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    """The CPU the figures were measured on: its model name, family and model, the flags that
    decide the classifiers' speed, the cores this process may use, and the load average now."""
    from inference.models.bf16_speed import FLAGS_THAT_MATTER

    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "cpu family", "model", "flags") and key.strip() not in fields:
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {
        "cpu": fields.get("model name"),
        "family_model": f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}",
        "flags": [flag for flag in FLAGS_THAT_MATTER if flag in flags],
        "no": [flag for flag in FLAGS_THAT_MATTER if flag not in flags],
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": load_average(),
    }


def largest_score_difference(rows: list[dict], reference: list[dict]) -> tuple[float, str | None]:
    """The largest difference between two modes' scores of the same videos (where both found
    faces) and the video it came from."""
    scores = {row["video"]: row["score"] for row in reference}
    pairs = [
        (abs(row["score"] - scores[row["video"]]), row["video"])
        for row in rows
        if row["score"] is not None and scores.get(row["video"]) is not None
    ]
    return max(pairs, default=(0.0, None))


def summarise(modes: dict[str, list[dict]]) -> dict:
    """Mean seconds per video of each mode (in all and per stage), speed-ups over the baseline,
    and the largest score differences (`COMPARED`) with the video of each."""
    mean = {name: round(float(np.mean([r["total_s"] for r in rows])), 3) for name, rows in modes.items() if rows}
    summary: dict = {
        "mean_total_s": mean,
        "mean_stage_s": {
            name: {stage: round(float(np.mean([r[f"{stage}_s"] for r in rows])), 3) for stage in STAGES}
            for name, rows in modes.items()
            if rows
        },
    }
    if "baseline" in mean:
        summary["speedup_over_baseline"] = {
            name: round(mean["baseline"] / mean[name], 2) if mean[name] > 0 else None
            for name in mean
            if name != "baseline"
        }
    compared = {
        f"{name}_vs_{reference}": largest_score_difference(modes[name], modes[reference])
        for name, reference in COMPARED
        if modes.get(name) and modes.get(reference)
    }
    summary["max_score_difference"] = {pair: difference for pair, (difference, _) in compared.items()}
    summary["max_score_difference_video"] = {pair: video for pair, (_, video) in compared.items()}
    return summary


def readable_videos(paths: list[Path]) -> list[Path]:
    """The videos whose container can be read; each other one skipped with a warning naming it
    (one broken file does not stop a benchmark)."""
    readable = []
    for path in paths:
        try:
            probe_video(path)
        except (VideoReadError, OSError) as error:
            logger.warning("%s: skipped (%s)", path, error)
        else:
            readable.append(path)
    return readable


def seconds_since_process_start() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere): its imports, at the top of main."""
    try:
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return round(time.time() - boot - ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def emit_report(report: dict, json_path: Path | None) -> None:
    """Print the report as JSON, then write it to `json_path` (whole, under a temporary name):
    printed first, so that an unwritable --json never loses it."""
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if json_path:
        with atomic_path(json_path) as partial:
            partial.write_text(text + "\n")
