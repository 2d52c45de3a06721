"""The registry of named weights: which files each named set holds, where each is fetched from
(a plain HTTPS address such as a GitHub release asset, a Google Drive file, or a file of a Hugging
Face hub repository at a pinned revision), what is known of its size and SHA-256, the detector that
reads it, and the licence and terms it comes under. inference/models/named_weights.py fetches,
verifies and lists them.

Nothing here is bundled: every file is fetched from its authors' own address on the user's
request, after its licence and terms are said (and, where they restrict use, accepted)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

WINNER = "dfdc-winner"  # inference.detectors.recipes.WinnerRecipe.name


@dataclass(frozen=True)
class GoogleDrive:
    """A file shared on Google Drive ("anyone with the link"), by its file id."""

    file_id: str

    def start_url(self) -> str:
        return f"https://drive.google.com/uc?export=download&id={quote(self.file_id)}"

    def describe(self) -> str:
        return f"Google Drive file {self.file_id} (https://drive.google.com/file/d/{self.file_id}/view)"


@dataclass(frozen=True)
class HuggingFace:
    """A file of a Hugging Face hub repository at a pinned revision (a commit hash)."""

    repo_id: str
    filename: str
    revision: str

    def resolve_url(self, endpoint: str = "https://huggingface.co") -> str:
        return f"{endpoint.rstrip('/')}/{self.repo_id}/resolve/{self.revision}/{quote(self.filename)}"

    def describe(self) -> str:
        return f"Hugging Face hub {self.repo_id} at revision {self.revision[:12]}, file {self.filename}"


@dataclass(frozen=True)
class Licence:
    """The licence a set of weights comes under, as its authors state it. `must_accept`: its terms
    restrict use (non-commercial, no redistribution), so `fetch` downloads only once the user has
    accepted them (--accept-terms, or yes at the prompt)."""

    name: str
    url: str
    terms: str  # what the licence allows and forbids, in a sentence or two, said before a download
    holder: str
    must_accept: bool = False


@dataclass(frozen=True)
class WeightFile:
    name: str  # its path in the weights folder (a subfolder per detector: "sbi/FFraw.tar")
    url: str  # where it is fetched from (for Drive and the hub, their public address of the file)
    encoder: str
    input_size: int
    size: int | None = None  # bytes, where the publisher states it
    sha256: str | None = None  # hex digest, where the publisher states it
    min_size: int | None = None  # bounds on the size in bytes, where it is not stated exactly
    max_size: int | None = None
    origin: GoogleDrive | HuggingFace | None = None  # None: a plain HTTP(S) address (a GitHub release)
    file_format: str = "winner-checkpoint"  # what verify reads it as (inference/models/weight_formats.py)
    companion: bool = False  # read beside a checkpoint (a config.json), not a checkpoint itself

    def source(self) -> str:
        """Where the file comes from, in words."""
        if self.origin is not None:
            return self.origin.describe()
        if "github.com/" in self.url and "/releases/download/" in self.url:
            return f"GitHub release asset {self.url}"
        return self.url


@dataclass(frozen=True)
class NamedEnsemble:
    name: str
    description: str
    files: tuple[WeightFile, ...]
    # the MTCNN scale its checkpoints' faces were found at, which detect and the page score at unless
    # told otherwise (preprocess.faces.face_detector.parse_scale reads it; "rule": by resolution)
    detector_scale: float | str = "rule"
    detector: str = WINNER  # the detector that reads these weights (inference/detectors/)
    licence: Licence | None = None

    def checkpoints(self) -> tuple[WeightFile, ...]:
        return tuple(f for f in self.files if not f.companion)


def drive_file(name: str, file_id: str, encoder: str, input_size: int, **known) -> WeightFile:
    origin = GoogleDrive(file_id)
    return WeightFile(name, origin.start_url(), encoder, input_size, origin=origin, **known)


def hub_file(name: str, origin: HuggingFace, encoder: str, input_size: int, **known) -> WeightFile:
    return WeightFile(name, origin.resolve_url(), encoder, input_size, origin=origin, **known)


_MIT_WINNER = Licence(
    "MIT",
    "https://github.com/selimsef/dfdc_deepfake_challenge/blob/master/LICENSE",
    "use, copy, modify and distribute freely, keeping the copyright and permission notice",
    "Selim Seferbekov",
)
_SBI_LICENCE = Licence(
    "the SBI software licence agreement (academic or non-profit non-commercial research use only)",
    "https://github.com/mapooon/SelfBlendedImages/blob/master/LICENSE",
    "the code and pretrained model are for your own non-commercial internal research only (commercial use needs "
    "a licence agreement with the authors); you may not distribute, copy, sell, sublicense or give third "
    "parties access to them; derivatives belong to the licensor; by downloading you agree to the agreement",
    "Yamasaki Lab, The University of Tokyo (Kaede Shiohara, Toshihiko Yamasaki)",
    must_accept=True,
)
_DEEPFAKEBENCH_LICENCE = Licence(
    "CC BY-NC 4.0",
    "https://creativecommons.org/licenses/by-nc/4.0/",
    "non-commercial use only, with attribution to DeepfakeBench (SCLBD, The Chinese University of Hong Kong, "
    "Shenzhen); the weights are released with the repository, which is under this licence",
    "The Chinese University of Hong Kong, Shenzhen",
    must_accept=True,
)
# The model card's `license: mit` is as two unrelated projects record it; the card itself was not
# read here (no network). The code's LICENSE (yermandy/GenD) is MIT.
_GEND_LICENCE = Licence(
    "MIT",
    "https://huggingface.co/yermandy/GenD_CLIP_L_14",
    "use, copy, modify and distribute freely, keeping the copyright and permission notice (the code's LICENSE "
    "is MIT; the model card's metadata says `license: mit`); the training data, FaceForensics++, has its own terms",
    "Yermakov et al. (yermandy/GenD)",
)

_ORIGINAL_RELEASE = "https://github.com/selimsef/dfdc_deepfake_challenge/releases/download/0.0.1/"
_ORIGINAL_FILES = (
    "final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36",
    "final_555_DeepFakeClassifier_tf_efficientnet_b7_ns_0_19",
    "final_777_DeepFakeClassifier_tf_efficientnet_b7_ns_0_29",
    "final_777_DeepFakeClassifier_tf_efficientnet_b7_ns_0_31",
    "final_888_DeepFakeClassifier_tf_efficientnet_b7_ns_0_37",
    "final_888_DeepFakeClassifier_tf_efficientnet_b7_ns_0_40",
    "final_999_DeepFakeClassifier_tf_efficientnet_b7_ns_0_23",
)
_DEEPFAKEBENCH_RELEASE = "https://github.com/SCLBD/DeepfakeBench/releases/download/v1.0.1/"
# The revision pinned is a commit of the hub repository; the model file's SHA-256 and size are the
# hub's LFS record of it, so a file of any other revision is refused whatever the revision says.
GEND_REPO, GEND_REVISION = "yermandy/GenD_CLIP_L_14", "891ce014a0308386c4d7d25b3dcf436a22db5504"
GEND_SHA256 = "d76f0bdfd74a29fe1b1c1b84a80ac92486993e426878e8c7a3944281fbb96833"
GEND_SIZE = 1_215_928_160


def _sbi(variant: str, file_id: str, data: str) -> NamedEnsemble:
    # No size or hash is published: trusted on first use. Bounds from the model: the EfficientNet-B4's
    # 17.55 M weights take 70 MB in fp32; the authors' file adds SAM's optimizer state (about as much again).
    return NamedEnsemble(
        f"sbi-{variant.lower()}",
        f"Self-Blended Images (CVPR 2022) EfficientNet-B4 at 380 px trained on {data}, as its authors released it",
        (
            drive_file(
                f"sbi/{variant}.tar",
                file_id,
                "tf_efficientnet_b4",
                380,
                min_size=60 * 10**6,
                max_size=500 * 10**6,
                file_format="sbi-checkpoint",
            ),
        ),
        detector="sbi",
        licence=_SBI_LICENCE,
    )


def _deepfakebench(name: str, encoder: str, file_format: str) -> WeightFile:
    # Release assets of v1.0.1 (the README's "pre-trained weights" link); no size or hash published.
    # Bounds from the models: Xception 21.9 M weights (88 MB fp32), EfficientNet-B4 17.6 M (70 MB).
    return WeightFile(
        f"deepfakebench/{name}",
        _DEEPFAKEBENCH_RELEASE + name,
        encoder,
        256,
        min_size=50 * 10**6,
        max_size=200 * 10**6,
        file_format=file_format,
    )


ENSEMBLES = {
    "original": NamedEnsemble(
        "original",
        "the winning solution's seven EfficientNet-B7 at 380 px (fold 0, seeds 111-999), as its authors released them",
        # The release states no sizes or hashes: they are trusted on first use (see named_weights).
        # Bounds from the model, not the publisher: a B7's 66.4M weights take 266 MB in fp32 (133 MB
        # even in fp16); 1 GB leaves room for an optimizer's state beside them.
        tuple(
            WeightFile(name, _ORIGINAL_RELEASE + name, "tf_efficientnet_b7_ns", 380, min_size=10**8, max_size=10**9)
            for name in _ORIGINAL_FILES
        ),
        detector_scale=0.5,  # the original code found faces at half size, for its training crops and its kernel
        licence=_MIT_WINNER,
    ),
    "sbi-ffraw": _sbi("FFraw", "12sLyqBp0VFwdpA-oZLdIOkOTkz_ZnIhV", "FaceForensics++ raw"),
    "sbi-ffc23": _sbi("FFc23", "1X0-NYT8KPursLZZdxduRQju6E52hauV0", "FaceForensics++ c23"),
    "deepfakebench-xception": NamedEnsemble(
        "deepfakebench-xception",
        "DeepfakeBench's Xception at 256 px trained on FaceForensics++ c23 (release v1.0.1)",
        (_deepfakebench("xception_best.pth", "legacy_xception", "deepfakebench-xception"),),
        detector="deepfakebench",
        licence=_DEEPFAKEBENCH_LICENCE,
    ),
    "deepfakebench-effnb4": NamedEnsemble(
        "deepfakebench-effnb4",
        "DeepfakeBench's EfficientNet-B4 at 256 px trained on FaceForensics++ c23 (release v1.0.1)",
        (_deepfakebench("effnb4_best.pth", "tf_efficientnet_b4", "deepfakebench-effnb4"),),
        detector="deepfakebench",
        licence=_DEEPFAKEBENCH_LICENCE,
    ),
    "gend-clip-l14": NamedEnsemble(
        "gend-clip-l14",
        "GenD (WACV 2026) CLIP ViT-L/14 at 224 px trained on FaceForensics++ c23, as its authors released it",
        (
            hub_file(
                "gend/GenD_CLIP_L_14/model.safetensors",
                HuggingFace(GEND_REPO, "model.safetensors", GEND_REVISION),
                "vit_large_patch14_clip_quickgelu_224",
                224,
                size=GEND_SIZE,
                sha256=GEND_SHA256,
                file_format="gend-safetensors",
            ),
            hub_file(
                "gend/GenD_CLIP_L_14/config.json",
                HuggingFace(GEND_REPO, "config.json", GEND_REVISION),
                "vit_large_patch14_clip_quickgelu_224",
                224,
                min_size=2,
                max_size=10**6,
                file_format="json",
                companion=True,
            ),
        ),
        detector="gend",
        licence=_GEND_LICENCE,
    ),
}
