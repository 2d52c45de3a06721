"""Who a video shows, read from its file name: the people whose videos must share a fold.

A face swap shows two people: the person filmed (the scene is theirs) and the person whose face
was put on. Validating on B's own video after training on a swap with B's face leaks B, so
preprocess/folds.py keeps every video of a person, swaps with their face included, in one fold.

One pure function per layout; each is tolerant: a name that does not parse gives no identity
(the video then stands for itself).

  ffpp     original_sequences/youtube/NNN -> youtube:NNN; a fake TTT_SSS (SSS's face on TTT's
           scene) -> youtube:TTT and youtube:SSS; original_sequences/actors/AA__scene ->
           actors:AA; a DeepFakeDetection fake AA_BB__scene__code -> actors:AA and actors:BB
  celebdf  Celeb-real/idA_NNNN -> idA; Celeb-synthesis/idA_idB_NNNN (idB's face on idA's
           video) -> idA and idB; YouTube-real/NNNNN names nobody
  dfdcp    <folder>/<person>/<person>_<scene>/<file>: the filmed person; a fake's file
           SSS_<person>_<scene>_NNN adds SSS, the person whose face was put on
DFDC's 10-letter ids, CSV rows, the 140k faces and plain folders name nobody.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

FFPP_FAKE = re.compile(r"^(?P<target>\d+)_(?P<source>\d+)$")
FFPP_DFD_FAKE = re.compile(r"^(?P<actors>\d+)_(?P<source>\d+)__(?P<scene>.+)__[A-Za-z0-9]+$")  # DeepFakeDetection
FFPP_YOUTUBE = re.compile(r"^\d+$")
FFPP_ACTOR = re.compile(r"^(?P<actor>\d+)__.+$")
CELEBDF_FAKE = re.compile(r"^(?P<target>id\d+)_(?P<source>id\d+)_(?P<clip>\d+)$")
CELEBDF_REAL = re.compile(r"^(?P<person>id\d+)_\d+$")
DFDCP_FAKE = re.compile(r"^(?P<source>\d+)_(?P<target>\d+)_[^_]+_\d+$")


def ffpp_identities(stem: str) -> tuple[str, ...]:
    """The people of a FaceForensics++ video (original or fake) from its file name."""
    if FFPP_YOUTUBE.match(stem):
        return (f"youtube:{stem}",)
    if match := FFPP_FAKE.match(stem):
        return _distinct(f"youtube:{match['target']}", f"youtube:{match['source']}")
    if match := FFPP_DFD_FAKE.match(stem):
        return _distinct(f"actors:{match['actors']}", f"actors:{match['source']}")
    if match := FFPP_ACTOR.match(stem):
        return (f"actors:{match['actor']}",)
    return ()


def celebdf_identities(stem: str) -> tuple[str, ...]:
    """The celebrities of a Celeb-DF v2 video from its file name (YouTube-real's: nobody known)."""
    if match := CELEBDF_FAKE.match(stem):
        return _distinct(match["target"], match["source"])
    if match := CELEBDF_REAL.match(stem):
        return (match["person"],)
    return ()


def dfdcp_identities(relative_path: str) -> tuple[str, ...]:
    """The people of a DFDC preview video from its path under the dataset root."""
    parts = PurePosixPath(relative_path).parts
    if len(parts) < 3:
        return ()
    person = parts[1]
    match = DFDCP_FAKE.match(PurePosixPath(relative_path).stem)
    return _distinct(person, match["source"]) if match else (person,)


def _distinct(*names: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))
