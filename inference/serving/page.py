"""A web page to check one video or photo: upload it, get the verdict, the probability of each
frame, the most suspicious faces with their Grad-CAM heatmaps, and the JSON document.

    python -m inference.app [--models CKPT ... | --ensemble NAME|YAML] [--port PORT]

It serves on 127.0.0.1 only (put a reverse proxy in front to share it), on --port, or without it
on the first free port from 7860 up; the log says the address. Models are chosen as by
inference.detect (without --models or --ensemble: the newest run's `_best` checkpoints in
./weights or ./work/weights, as ./work/ensemble.yaml's calibrated ensemble where it lists exactly
those, else the fetched `original` ensemble). Files are judged one at a time, in the order they
were sent (a queue: two uploads never run on the models at once).

Limits, each refusal a message of one line: an upload over --max-mb (Gradio refuses it while it
is sent); a photo or video frame over --max-photo-pixels or --max-pixels, or a video stating more
than --max-frames frames (default: --max-seconds x 60, the highest common frame rate, so a
container declaring 1000 fps cannot pass a long video as a short one) or lasting longer than
--max-seconds, all read from the headers before a frame is decoded at a size over the caps; and a
check that takes longer than --max-request-seconds, the reading of its headers and keyframes
included. The models live in a worker process, which reads the headers too: a check over its time
limit is stopped by killing that process, which frees its memory and processors at once, and a new
one loads the models again for the next file (seconds for small models, longer for big ensembles).

Each check judges a private copy of the upload in a temporary folder, with its heatmaps and
frames, and deletes that folder when done; the upload itself stays in Gradio's cache (so the same
upload can be checked again) until Gradio deletes the files older than an hour, hourly. Without
GRADIO_TEMP_DIR, that cache is a temporary folder of the page's own, deleted when it stops. What a
page killed mid-check leaves in the temporary folder, the next page to start removes, and says so
in its log (inference/serving/page_folders.py). The page's
function is also an API: `gradio_client.Client(URL).predict(handle_file(PATH), api_name="/check")`.

Verdicts as inference.detect gives them: with an --ensemble file calibrated by
inference.calibrate, the calibrated probability, the verdict at the operating point it stores
(--operating-point fpr=RATE; its 1% point by default) and how many of its reference real videos
score as high (training's out-of-fold videos, or a labelled held-out set); --threshold decides on
the calibrated probability instead, --uncalibrated ignores the calibration. Files are scored with
the settings the calibration's scores were made with (detector scale, frames, strategy, per-person,
TTA, recall boost, fast mode, precision), else with inference.detect's defaults (the detector
scale the models were made for: 0.5 for the original's); --fast (or --no-fast) and --detector-scale
where they differ from the calibration's are warned of.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import threading
from pathlib import Path

from common import cli
from common.records import MEDIA_SUFFIXES
from inference.models.model_options import add_media_arguments, add_model_arguments, positive_int
from inference.serving.detection import choose_models
from inference.serving.heap import give_back_large_buffers
from inference.serving.judge_worker import CheckTimeoutError, ModelWorker, UploadRefusedError, WorkerError, judge_file
from inference.serving.page_folders import check_folder, gradio_cache, sweep_leftovers
from inference.serving.upload_checks import size_refusal, upload_limits
from inference.serving.verdict import verdict_explanation
from inference.serving.verdict_options import add_verdict_arguments
from preprocess.faces.face_detector import scale_argument

logger = logging.getLogger("inference.app")

INTRO = """# Is it a deepfake?
Upload a video or a photo with a face. The models score every face found in up to 32 frames and
give the probability that the faces were swapped or synthesised. The heatmaps show where each
face's features raised that probability the most (Grad-CAM): where the models looked, not proof
that a region was manipulated."""

HIGHEST_FPS = 60  # --max-frames defaults to --max-seconds at this frame rate
CACHE_SECONDS = 3600  # Gradio's cache: every hour, the uploads older than an hour are deleted


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        conflict_handler="resolve",  # the page's own --max-frames replaces add_media_arguments' one
    )
    add_model_arguments(parser)
    add_media_arguments(parser)
    parser.add_argument(
        "--port", type=port_number, default=None, help="port on 127.0.0.1 (default: the first free one from 7860)"
    )
    parser.add_argument("--max-mb", type=positive_float, default=200.0, help="largest upload in MB (200)")
    parser.add_argument("--max-seconds", type=positive_float, default=600.0, help="longest video in seconds (600)")
    parser.add_argument(
        "--max-frames",
        type=positive_int,
        default=None,
        help=f"most frames a video may state (default: --max-seconds x {HIGHEST_FPS})",
    )
    parser.add_argument(
        "--max-request-seconds",
        type=positive_float,
        default=300.0,
        help="longest a check may take before it is stopped (300)",
    )
    add_verdict_arguments(parser)
    parser.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="inference.predict's fast mode (default: the calibration's setting, else off)",
    )
    parser.add_argument(
        "--detector-scale",
        type=scale_argument,
        default=None,
        help="MTCNN scale: a number or 'rule' (default as inference.detect's: the calibration's, else the models', "
        "0.5 for the original's, else rule)",
    )
    args = parser.parse_args(argv)
    if args.max_frames is None:
        args.max_frames = max(1, int(args.max_seconds * HIGHEST_FPS))
    # what inference.detect's judging reads: unset, the worker takes them from the calibration, else
    # inference.detect's defaults (inference/serving/detect_settings.py)
    args.fp32 = args.cpu_bf16 = args.per_person = args.no_recall_boost = args.tta = None
    args.frames = args.strategy = None
    args.explain = None
    return args


def upload_limit_bytes(max_mb: float) -> int:
    """--max-mb as the whole number of bytes Gradio's launch(max_file_size=) takes."""
    return max(1, int(max_mb * 2**20))


class Judge:
    """What the page calls: `check` has a private copy of an upload checked against the limits
    and judged by the worker process (`ModelWorker`) within the time limit, or refuses it."""

    def __init__(self, args: argparse.Namespace, judge=judge_file):
        self.args = args
        choose_models(args)
        self.worker = ModelWorker(args, judge)

    def check(self, upload: str | None):
        """Verdict (Markdown), probability plot, frame, gallery of faces and heatmaps, JSON document."""
        import gradio as gr

        if not upload:
            raise gr.Error("Upload a video or a photo first.")
        name = Path(upload).name
        with check_folder() as folder:
            path = Path(folder) / name
            try:
                shutil.copyfile(upload, path)
            except FileNotFoundError:
                raise gr.Error(f"{name}: this upload is no longer on the server: upload it again") from None
            except OSError as error:  # a full disk among them
                raise gr.Error(f"{name}: the upload could not be copied to be judged ({error.strerror})") from None
            problem = size_refusal(path, self.args.max_mb)
            if problem:
                raise gr.Error(problem)
            limit, limits = self.args.max_request_seconds, upload_limits(self.args)
            try:  # its headers and keyframes are read there too, within the time limit
                document, images = self.worker.judge(path, Path(folder) / "explanation", limit, limits)
            except UploadRefusedError as refusal:
                raise gr.Error(str(refusal)) from None
            except CheckTimeoutError:
                raise gr.Error(
                    f"{name}: not judged within the {limit:g} s a check may take here (--max-request-seconds): stopped"
                ) from None
            except WorkerError as error:
                raise gr.Error(f"{name}: {error}") from None
        document["file"] = name
        if document.get("error"):  # named as uploaded, not by the private copy's path
            document["error"]["message"] = document["error"]["message"].replace(str(path), name)
        explanation = document.pop("explanation", None) or {}  # its files are gone: the page shows the images
        document["explained_faces"] = [
            {k: h[k] for k in ("frame", "probability")} for h in explanation.get("heatmaps", [])
        ]
        return (verdict_markdown(document), images["plot"], images["frame"], images["faces"], document)

    def close(self) -> None:
        self.worker.close()


def verdict_markdown(document: dict) -> str:
    if document.get("error"):
        return f"## Cannot judge {document['file']}\n{document['error']['message']}"
    people = len(document["people"])
    decided = (
        verdict_explanation(document)
        if document.get("operating_point") or document.get("calibrated")
        else f"FAKE above {document['threshold']}"
    )
    return (
        f"## {document['verdict']}: P(fake) = {document['probability']:.3f}"
        f"{' (calibrated)' if document.get('calibrated') else ''}\n"
        f"{document['file']}: {document['faces']} face{'s' * (document['faces'] != 1)} of {people} "
        f"{'person' if people == 1 else 'people'} in {document['frames']['with_face']} of "
        f"{document['frames']['sampled']} sampled frames; {decided}."
    )


def build_app(judge: Judge):
    import gradio as gr

    suffixes = sorted(MEDIA_SUFFIXES)
    with gr.Blocks(title="Deepfake check", delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as app:
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


def launch(app, args: argparse.Namespace) -> str:
    """Serve `app` on 127.0.0.1 (on --port, or the first free port from 7860) without blocking;
    its address."""
    app.launch(
        server_name="127.0.0.1",
        server_port=args.port,
        max_file_size=upload_limit_bytes(args.max_mb),
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
    )
    return app.local_url


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    give_back_large_buffers()  # each check's images freed back to the system, not kept in the heap
    sweep_leftovers()  # what pages killed mid-check left in the temporary folder
    with gradio_cache():  # Gradio's copies of uploads in a folder of the page's own, swept as those are
        return serve(args)


def serve(args: argparse.Namespace) -> int:
    """Load the models and serve the page until Ctrl-C or SIGTERM; the exit status."""
    try:
        judge = Judge(args)
    except cli.BAD_INPUT as error:
        return cli.fail(error)
    try:
        app = build_app(judge)
        url = launch(app, args)
        logger.info("the page is on %s (Ctrl-C or SIGTERM stops it)", url)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
            # a shell starts a background job (`... &`, nohup) with SIGINT ignored, and Python then
            # keeps ignoring it: Ctrl-C or `kill -INT` would never stop the page
            signal.signal(signal.SIGINT, signal.default_int_handler)
        app.block_thread()  # until KeyboardInterrupt
        logger.info("stopping: closing the web server")
        close_within(app, SERVER_CLOSE_SECONDS)
    finally:
        logger.info("stopping the process that judges files")
        judge.close()
    return 0


SERVER_CLOSE_SECONDS = 10  # a browser tab still connected can hold the server's shutdown open


def close_within(app, seconds: float) -> bool:
    """Close the Gradio app, waiting at most `seconds`: its server waits for open connections to
    end, and a page left open in a browser need never end them. True when it closed in time."""
    closing = threading.Thread(target=app.close, name="close-web-server", daemon=True)
    closing.start()
    closing.join(seconds)
    if closing.is_alive():
        logger.warning("the web server did not close within %g s (a page still connected?): stopping anyway", seconds)
        return False
    return True
