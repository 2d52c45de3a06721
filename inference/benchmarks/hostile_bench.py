"""Hostile media through the three judging paths: a folder of decompression bombs, each judged by
inference.predict, inference.detect and the page (inference.app's Judge), each tool in its own
process, with one JSON document printed: per tool, each file's error line (or verdict), the
tool's peak resident memory and its seconds.

    python -m inference.benchmarks.hostile_bench [--out DIR]

The folder (in a temporary folder, or DIR, which is kept):
  black_20000x20000.png  a black 20000x20000 PNG (~0.4 MB; 1.2 GB once decoded)
  dark_6000x6000.png     a dark 6000x6000 PNG (~0.1 MB; 108 MB decoded, and MTCNN on it)
  png_4000x4000.mov      a few 4000x4000 PNG-coded frames in a mov (48 MB each decoded)
  declared_1000fps.mov   40000 tiny frames declared at 1000 fps: 40 seconds, more frames than the
                         36000 a video may state
  keyframes_6000.mp4     6000 flat 4096x2160 H.264 keyframes (14 MB), inside every cap: reading
                         each keyframe's size takes ~10-30 ms; the page judges it under
                         --max-request-seconds 20, and the JSON gives its seconds for each file
The models are one tiny random ResNet-18 checkpoint: what is measured is the reading of the
media, not the models. What to expect: each bomb one clear error line naming the cap, and each
tool's peak under 2 GB (most of it PyTorch and the models). keyframes_6000.mp4 is inside every
cap: the page stops it at its 20 s limit (before, it read the keyframes for 188 s first, with no
limit); predict and detect, which take no time limit, read it in full and decode 32 frames of
4096x2160 (~850 MB), finding no face (measured on 2 CPU cores: 20.1 s in the page, 50 s before;
peaks of 2.5 GB in predict and 2.1 GB in detect). Memory and time are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from common import cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_grey_png(path: Path, width: int, height: int, grey: int = 0) -> Path:
    """A valid 8-bit greyscale PNG of one grey level, compressed row block by row block: a
    20000x20000 one takes about a second and 0.4 MB, and never 400 MB of memory."""
    compressor = zlib.compressobj(9)
    rows_per_block = max(1, 2**22 // (width + 1))
    block = (b"\x00" + bytes([grey]) * width) * rows_per_block  # each row: filter type 0, then its pixels
    parts = []
    for start in range(0, height, rows_per_block):
        parts.append(compressor.compress(block[: (width + 1) * min(rows_per_block, height - start)]))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bits, greyscale, no interlace
    data = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")
    path.write_bytes(PNG_SIGNATURE + data)
    return path


def _png_frame_packet(width: int, height: int, grey: int) -> bytes:
    """One frame coded as PNG, as a packet's bytes."""
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt, codec.time_base = width, height, "gray", Fraction(1, 25)
    image = np.full((height, width), grey, np.uint8)
    packets = codec.encode(av.VideoFrame.from_ndarray(image, format="gray")) + codec.encode()
    return bytes(packets[0])


def write_png_video(
    path: Path, width: int, height: int, frames: int, fps: int = 25, grey: int = 0, sizes: list | None = None
) -> Path:
    """A mov of PNG-coded frames: the same coded frame `frames` times (fast at any count), stated
    as `width`x`height` at `fps`. `sizes`: each frame's own (width, height) instead, to make a
    stream whose frames are larger than its header says."""
    sizes = sizes or [(width, height)] * frames
    coded: dict[tuple[int, int], bytes] = {}
    with av.open(str(path), "w", format="mov") as container:
        stream = container.add_stream("png", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "gray"
        for index, size in enumerate(sizes):
            if size not in coded:
                coded[size] = _png_frame_packet(*size, grey)
            packet = av.Packet(coded[size])
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, Fraction(1, fps)
            packet.is_keyframe = True
            container.mux(packet)
    return path


def write_keyframe_video(path: Path, width: int, height: int, frames: int, fps: int = 25) -> Path:
    """An H.264 mp4 whose every frame is a keyframe: one flat frame coded once (x264's default
    preset, ~3 KB at 4096x2160) and muxed `frames` times, so fast at any count; decoding each
    keyframe, as reading its frame sizes does, is not (~10-30 ms each at 4096x2160)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt, codec.time_base = width, height, "yuv420p", Fraction(1, fps)
    codec.options = {"g": "1"}  # in-band parameter sets: each packet decodes on its own
    image = np.full((height, width, 3), 90, np.uint8)
    coded = bytes((codec.encode(av.VideoFrame.from_ndarray(image, format="rgb24")) + codec.encode())[0])
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("h264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            packet = av.Packet(coded)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, Fraction(1, fps)
            packet.is_keyframe = True
            container.mux(packet)
    return path


def make_bombs(folder: Path) -> list[Path]:
    """The issue's hostile files, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_grey_png(folder / "black_20000x20000.png", 20000, 20000, 0),
        write_grey_png(folder / "dark_6000x6000.png", 6000, 6000, 20),
        write_png_video(folder / "png_4000x4000.mov", 4000, 4000, frames=4),
        write_png_video(folder / "declared_1000fps.mov", 16, 16, frames=40000, fps=1000, grey=90),
        write_keyframe_video(folder / "keyframes_6000.mp4", 4096, 2160, frames=6000),
    ]


def write_tiny_checkpoint(path: Path) -> Path:
    """A random ResNet-18 classifier in the project's checkpoint format."""
    import torch

    from training.models.zoo import create_model

    torch.manual_seed(0)
    state = create_model("resnet18").state_dict()
    normalisation = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    torch.save({"encoder": "resnet18", "input_size": 64, **normalisation, "state_dict": state}, path)
    return path


# The page's judging in a process of its own: its Judge's public check on each file, under the
# issue's --max-request-seconds 20.
PAGE_SCRIPT = """
import json, sys, time
from pathlib import Path
import gradio as gr
from inference.serving import page as app
folder, checkpoint = Path(sys.argv[1]), sys.argv[2]
judge = app.Judge(app.parse_args(["--models", checkpoint, "--runtime", "torch", "--max-request-seconds", "20"]))
results, seconds = {}, {}
try:
    for path in sorted(folder.iterdir()):
        started = time.perf_counter()
        try:
            document = judge.check(str(path))[-1]
            results[path.name] = f"{document['verdict']} {document['probability']:.3f}"
        except gr.Error as error:
            results[path.name] = "error: " + str(error.message)
        seconds[path.name] = round(time.perf_counter() - started, 1)
finally:
    judge.close()
print(json.dumps({"files": results, "seconds": seconds}))
"""


def run_measured(command: list[str], log: Path) -> tuple[int, str, float, float]:
    """Run `command` (stdout returned, stderr to `log`): (exit status, stdout, peak resident MB of
    it and its children, seconds)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, open(log, "w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, its waited children included
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read()
    return process.returncode, stdout, usage.ru_maxrss / 1024, time.perf_counter() - started


def _read_csv_errors(path: Path) -> dict[str, str]:
    import csv

    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        return {row["filename"]: f"error: {row['reason']}" for row in csv.DictReader(handle)}


def judge_with_each_tool(folder: Path, checkpoint: Path, work: Path) -> dict:
    """Each tool's answer for each file of `folder`, its peak memory and seconds."""
    models = ["--models", str(checkpoint), "--runtime", "torch"]
    python = sys.executable
    report = {}

    submission = work / "predict" / "submission.csv"
    status, _, peak, seconds = run_measured(
        [python, "-m", "inference.predict", "--test-dir", str(folder), *models, "--output", str(submission)],
        work / "predict.log",
    )
    errors = _read_csv_errors(submission.parent / "errors.csv")
    files = {path.name: errors.get(path.name, "scored") for path in sorted(folder.iterdir())}
    report["predict"] = {"exit": status, "files": files, "peak_mb": round(peak), "seconds": round(seconds, 1)}

    status, stdout, peak, seconds = run_measured(
        [python, "-m", "inference.detect", str(folder), *models, "--json"], work / "detect.log"
    )
    files = {}
    for line in stdout.splitlines():
        document = json.loads(line)
        error = document["error"]
        answer = f"error: {error['message']}" if error else f"{document['verdict']} {document['probability']:.3f}"
        files[Path(document["file"]).name] = answer
    report["detect"] = {"exit": status, "files": files, "peak_mb": round(peak), "seconds": round(seconds, 1)}

    status, stdout, peak, seconds = run_measured(
        [python, "-c", PAGE_SCRIPT, str(folder), str(checkpoint)], work / "page.log"
    )
    failed = {"files": {"failed": f"see {work / 'page.log'}"}}
    answers = json.loads(stdout) if status == 0 and stdout.strip() else failed
    report["page"] = {
        "exit": status,
        "files": answers["files"],
        "file_seconds": answers.get("seconds", {}),
        "peak_mb": round(peak),
        "seconds": round(seconds, 1),
    }
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.benchmarks.hostile_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, help="folder for the media, the checkpoint and the logs (kept)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as scratch:
        work = args.out or Path(scratch)
        started = time.perf_counter()
        bombs = make_bombs(work / "bombs")
        generated = time.perf_counter() - started
        checkpoint = write_tiny_checkpoint(work / "tiny.pt")
        report = {
            "files": {path.name: path.stat().st_size for path in bombs},
            "generated_seconds": round(generated, 1),
            **judge_with_each_tool(work / "bombs", checkpoint, work),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
