"""A web page to check one video or photo: upload it, get the verdict, the probability of each
frame, the most suspicious faces with their Grad-CAM heatmaps, and the JSON document.

    python -m inference.app [--models CKPT ... | --ensemble NAME|YAML] [--port 7860]

It serves on 127.0.0.1 only (put a reverse proxy in front to share it). Models are chosen as by
inference.detect (without --models or --ensemble: the newest run's `_best` checkpoints in
./weights or ./work/weights, else the fetched `original` ensemble). Files are judged one at a
time, in the order they were sent (a queue: two uploads never run on the models at once).
An upload over --max-mb, or a video longer than --max-seconds, is refused with a message saying
so; an uploaded file is deleted once it has been judged. The page's function is also an API:
`gradio_client.Client(URL).predict(handle_file(PATH), api_name="/check")`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import cv2
import torch

from inference.detect import choose_models, examine
from inference.faces import inference_detector
from inference.model_options import add_model_arguments, autocast_dtype, cpu_precision, load_members
from preprocess import cli
from preprocess.face_detector import RESOLUTION_RULE, default_device
from preprocess.records import MEDIA_SUFFIXES
from preprocess.video_io import VideoReadError, is_image, probe_video

logger = logging.getLogger("inference.app")

INTRO = """# Is it a deepfake?
Upload a video or a photo with a face. The models score every face found in up to 32 frames and
give the probability that the faces were swapped or synthesised. The heatmaps show where each
face's features raised that probability the most (Grad-CAM): where the models looked, not proof
that a region was manipulated."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_arguments(parser)
    parser.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (7860)")
    parser.add_argument("--max-mb", type=float, default=200.0, help="largest upload in MB (200)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="longest video in seconds (600)")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="FAKE above this probability (0.5), as inference.score counts"
    )
    parser.add_argument("--fast", action="store_true", help="inference.predict's fast mode")
    args = parser.parse_args(argv)
    # what inference.detect's judging reads, at its defaults
    args.fp32 = args.cpu_bf16 = args.per_person = args.no_recall_boost = False
    args.frames, args.strategy, args.detector_scale = 32, "confident", RESOLUTION_RULE
    return args


class Judge:
    """The models and the detector, loaded once; `check` judges one uploaded file."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = torch.device(args.device) if args.device else default_device()
        choose_models(args)
        precision = cpu_precision(args, self.device)
        self.members = load_members(args, self.device, precision)
        self.amp_dtype = autocast_dtype(self.device, precision)
        self.detector = inference_detector(args.detector_scale, self.device, args.fast)

    def refusal(self, path: Path) -> str | None:
        """Why an upload is not judged (too large, too long, not a video or photo), or None."""
        if path.suffix.lower() not in MEDIA_SUFFIXES:
            return f"{path.name}: not a video or photo ({', '.join(sorted(MEDIA_SUFFIXES))})"
        megabytes = path.stat().st_size / 2**20
        if megabytes > self.args.max_mb:
            return f"{path.name}: {megabytes:.2g} MB, more than the {self.args.max_mb:g} MB this page accepts"
        if not is_image(path):
            try:
                info = probe_video(path)
            except VideoReadError as error:
                return f"{path.name}: {error.reason}"
            seconds = info.frame_count / info.fps if info.fps > 0 else 0.0
            if seconds > self.args.max_seconds:
                return f"{path.name}: {seconds:.0f} s long, more than the {self.args.max_seconds:g} s this page accepts"
        return None

    def check(self, upload: str | None):
        """Verdict (Markdown), probability plot, frame, gallery of faces and heatmaps, JSON document."""
        import gradio as gr

        if not upload:
            raise gr.Error("Upload a video or a photo first.")
        path = Path(upload)
        try:
            problem = self.refusal(path)
            if problem:
                raise gr.Error(problem)
            with tempfile.TemporaryDirectory(prefix="deepfake-check-") as folder:
                self.args.explain = Path(folder)
                document = examine(path, self.detector, self.members, self.args, self.device, self.amp_dtype)
                images = _load_explanation(document.get("explanation"))
        finally:
            path.unlink(missing_ok=True)  # the upload is not kept
        document["file"] = path.name
        explanation = document.pop("explanation", None) or {}  # its files are gone: the page shows the images
        document["explained_faces"] = [
            {k: h[k] for k in ("frame", "probability")} for h in explanation.get("heatmaps", [])
        ]
        return (verdict_markdown(document), images["plot"], images["frame"], images["faces"], document)


def _read_rgb(path: str | None):
    if not path:
        return None
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _load_explanation(explanation: dict | None) -> dict:
    """The explanation's images in memory (its folder is removed once the file is judged)."""
    explanation = explanation or {}
    faces = [
        (_read_rgb(h["path"]), f"frame {h['frame']}: P(fake) {h['probability']:.3f}")
        for h in explanation.get("heatmaps", [])
    ]
    return {
        "plot": _read_rgb(explanation.get("plot")),
        "frame": _read_rgb(explanation.get("frame")),
        "faces": [(image, caption) for image, caption in faces if image is not None],
    }


def verdict_markdown(document: dict) -> str:
    if document.get("error"):
        return f"## Cannot judge {document['file']}\n{document['error']['message']}"
    people = len(document["people"])
    return (
        f"## {document['verdict']}: P(fake) = {document['probability']:.3f}\n"
        f"{document['file']}: {document['faces']} face{'s' * (document['faces'] != 1)} of {people} "
        f"{'person' if people == 1 else 'people'} in {document['frames']['with_face']} of "
        f"{document['frames']['sampled']} sampled frames; FAKE above {document['threshold']}."
    )


def build_app(judge: Judge):
    import gradio as gr

    suffixes = sorted(MEDIA_SUFFIXES)
    with gr.Blocks(title="Deepfake check", delete_cache=(3600, 3600)) as app:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Video or photo", file_types=suffixes, type="filepath")
                button = gr.Button("Check", variant="primary", elem_id="check")
                verdict = gr.Markdown(elem_id="verdict")
            with gr.Column():
                plot = gr.Image(label="P(fake) of each sampled frame", type="numpy", interactive=False)
                frame = gr.Image(label="The most suspicious frame", type="numpy", interactive=False)
        faces = gr.Gallery(label="Most suspicious faces: the face, and Grad-CAM toward fake", columns=3)
        document = gr.JSON(label="JSON")
        button.click(
            judge.check,
            inputs=upload,
            outputs=[verdict, plot, frame, faces, document],
            api_name="check",
            concurrency_limit=1,
        )
    app.queue(default_concurrency_limit=1, max_size=32)
    return app


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        judge = Judge(args)
    except cli.BAD_INPUT as error:
        return cli.fail(error)
    build_app(judge).launch(server_name="127.0.0.1", server_port=args.port, max_file_size=f"{args.max_mb:g}mb")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
