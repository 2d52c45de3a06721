"""Temporal models at inference: clips of T crops of one face track, `step` frames apart as in
the model's training (preprocessing crops every `every`-th frame), spread evenly over the video.

A temporal member gets its own frames: `clips` windows of T frames, `step` apart (shrunk for a
video too short to hold one window), their faces detected and cropped as the frame models' and
linked into tracks; each track seen in a window makes one clip, a frame where the track is not
seen filled by its nearest crop in the window. The member scores every clip; its video score
aggregates the clips (per track with --per-person), as a frame model aggregates faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from common.video_io import MediaLimits, check_media, iter_frames, probe_video
from inference.models.ensemble import Member, face_batch
from inference.pipeline.faces import NoFaceError, VideoFaces, crop_faces
from preprocess.faces.tracks import link_people


def clip_windows(frame_count: int, length: int, step: int, clips: int) -> list[list[int]]:
    """Frame indices of up to `clips` windows of `length` frames `step` apart, evenly spread."""
    if frame_count <= 0 or length <= 0:
        return []
    if length > 1:
        step = max(1, min(step, (frame_count - 1) // (length - 1)))
    span = (length - 1) * step
    room = max(0, frame_count - 1 - span)
    clips = max(1, min(clips, room // step + 1))  # windows at least a step apart
    starts = sorted({int(start) for start in np.linspace(0, room, clips)})
    return [[min(start + k * step, frame_count - 1) for k in range(length)] for start in starts]


@dataclass(frozen=True)
class Clip:
    track: int
    crops: list[np.ndarray]
    last_frame: int  # the window's last frame: the clip is known once the video has played to it


def track_clips(faces: VideoFaces, windows: list[list[int]]) -> list[Clip]:
    """A clip for each track seen in each window."""
    people = link_people(faces.boxes_by_frame())
    crop_of: dict[tuple[int, int], int] = {}
    position = 0
    for frame, persons in zip(faces.frame_indices, people, strict=True):
        for person in persons:
            crop_of[(frame, person)] = position
            position += 1
    clips = []
    for window in windows:
        for person in sorted({p for (frame, p) in crop_of if frame in window}):
            seen = [(k, crop_of[(frame, person)]) for k, frame in enumerate(window) if (frame, person) in crop_of]
            nearest = [min(seen, key=lambda item: abs(item[0] - k))[1] for k in range(len(window))]
            clips.append(Clip(person, [faces.crops[index] for index in nearest], window[-1]))
    return clips


def extract_clips(
    path,
    detector,
    clip: tuple[int, int],
    frames: int,
    recall: bool,
    backend: str = "opencv",
    limits: MediaLimits | None = None,
) -> list[Clip]:
    """The clips of a video for a temporal member whose clips are `clip` = (length, step): as many
    windows as `frames` sampled frames hold (at least one); with `limits`, a video over them is
    refused before decoding (callers that ran `extract_faces` on it have checked it already)."""
    length, step = clip
    info = probe_video(path, backend) if limits is None else check_media(path, limits, backend)
    windows = clip_windows(info.frame_count, length, step, max(1, frames // length))
    indices = sorted({frame for window in windows for frame in window})
    decoded = dict(iter_frames(path, indices, backend, limits=limits))
    try:
        faces = crop_faces(path, decoded, detector, recall=recall)
    except NoFaceError:
        return []
    return track_clips(faces, windows)


@torch.no_grad()
def clip_probabilities(member: Member, clips: list[list[np.ndarray]], device: torch.device, batch_size: int = 8):
    """Sigmoid probability of each clip (a list of T crops) by a temporal member."""
    results = []
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        frames = face_batch([crop for clip in batch for crop in clip], member)
        images = frames.view(len(batch), len(batch[0]), *frames.shape[1:]).to(device)
        results.append(torch.sigmoid(member(images).float()).view(-1).cpu())
    return torch.cat(results).numpy() if results else np.zeros(0, np.float32)
