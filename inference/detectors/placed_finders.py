"""The authors' own face finders, where the user has placed their files: a file of the finder's name
in the folder of the detector's checkpoints (where `python -m inference.weights fetch` puts them,
e.g. ~/.cache/deepfake-detector/weights/sbi/) is used instead of the run's MTCNN, when what runs it
is installed; otherwise MTCNN finds the faces and a warning says why."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from common.cli import InputError

logger = logging.getLogger(__name__)


def placed_finder(
    checkpoints: Sequence[Path], names: Sequence[str], what: str, check: Callable[[Path], None]
) -> Path | None:
    """The first file named one of `names` beside one of `checkpoints` that `check` accepts (it
    raises InputError where the file or what runs it will not do); None, with a warning naming the
    file and the reason, where none is there or usable."""
    for folder in dict.fromkeys(Path(path).resolve().parent for path in checkpoints):
        for name in names:
            candidate = folder / name
            if not candidate.is_file():
                continue
            try:
                check(candidate)
            except InputError as error:
                logger.warning("%s was placed but is not used (%s): the run's MTCNN finds the faces", candidate, error)
                continue
            logger.info("%s: %s finds the faces, as its authors' code does", candidate, what)
            return candidate
    return None
