"""A view of a camera's scene without its people: what an operator draws lines on, made inside the boundary.

No single frame is ever shown. The view is built from frames sampled over minutes:

1. their **temporal median**, pixel by pixel: whoever walks by is in a minority of the frames at any pixel
   and vanishes;
2. on that still, every person and vehicle the detector finds at its lowest useful threshold (someone who
   stood the whole time, a parked car and its plate) and every face CenterFace finds is **filled**:
   its box, widened, is inpainted from the surrounding background, so none of its pixels remain;
3. the camera's privacy masks are blanked;
4. a **final check** runs the detectors again on the finished picture, at the same low thresholds: a person
   or a face still found refuses the view, and says why; nothing is returned but the reason.

The finished view is a JPEG of at most ``max_bytes``. Nothing here is written anywhere: the caller holds
the frames only while the view is built, and decides where the view goes (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from vigie_inference.detections import CountedClass, Detections

__all__ = [
    "FaceBoxes",
    "SceneView",
    "ViewParams",
    "ViewRefused",
    "build_scene_view",
    "decode_centerface",
    "temporal_median",
]

Picture = npt.NDArray[np.uint8]
# Normalised x1, y1, x2, y2 boxes and their scores.
FaceBoxes = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
DetectObjects = Callable[[Picture], Detections]
DetectFaces = Callable[[Picture], FaceBoxes]
_GREY = 114


@dataclass(frozen=True)
class ViewParams:
    """How a view is made. ``object_threshold`` and ``face_threshold`` are the lowest scores taken as a
    person, vehicle or face, both to fill and in the final check (the detector's decoding floor and a face
    threshold below CenterFace's usual 0.5)."""

    min_frames: int = 9
    object_threshold: float = 0.1
    face_threshold: float = 0.2
    # Each filled box grows by this share of its size on every side (a box is tight; a shadow is not).
    margin: float = 0.15
    # Filling runs again while something is still found, at most this many times, before the final check.
    fill_passes: int = 2
    max_bytes: int = 200_000
    jpeg_quality: int = 85


@dataclass(frozen=True)
class SceneView:
    """A view that passed the final check: a JPEG and its size. How many things were filled is not kept:
    for a scene with people standing, it would be a head count."""

    jpeg: bytes
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class ViewRefused:
    """No view: why, in words an operator can act on."""

    reason: str


def temporal_median(frames: Sequence[Picture]) -> Picture:
    """The per-pixel median of same-sized RGB frames (uint8)."""
    if not frames:
        raise ValueError("frames: at least one is needed")
    shape = frames[0].shape
    if any(frame.shape != shape for frame in frames):
        raise ValueError(f"frames: all must have the shape of the first, {shape}")
    stack = np.stack(frames)
    return np.asarray(np.median(stack, axis=0).round(), dtype=np.uint8)


def decode_centerface(
    heatmap: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    offset: npt.NDArray[np.float32],
    width: int,
    height: int,
    threshold: float,
) -> FaceBoxes:
    """CenterFace's outputs for one picture ([1, h, w], [2, h, w], [2, h, w] at a quarter of the input) as
    normalised boxes of a ``width`` x ``height`` picture and their scores, overlapping boxes merged."""
    ys, xs = np.nonzero(heatmap[0] > threshold)
    if ys.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    box_h = np.exp(scale[0, ys, xs]) * 4
    box_w = np.exp(scale[1, ys, xs]) * 4
    centre_y = (ys + offset[0, ys, xs] + 0.5) * 4
    centre_x = (xs + offset[1, ys, xs] + 0.5) * 4
    x1, y1 = np.clip(centre_x - box_w / 2, 0, width), np.clip(centre_y - box_h / 2, 0, height)
    x2, y2 = np.clip(x1 + box_w, 0, width), np.clip(y1 + box_h, 0, height)
    scores = heatmap[0, ys, xs].astype(np.float32)
    kept = np.asarray(
        cv2.dnn.NMSBoxes(
            np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).tolist(), scores.tolist(), threshold, 0.3
        ),
        dtype=np.intp,
    ).reshape(-1)
    boxes = np.stack([x1 / width, y1 / height, x2 / width, y2 / height], axis=1)[kept]
    return boxes.astype(np.float32), scores[kept]


def _people_and_vehicles(detections: Detections, threshold: float) -> npt.NDArray[np.float32]:
    """Boxes of every counted class (people, bicycles, vehicles) scoring at least ``threshold``."""
    return detections.boxes[detections.scores >= threshold]


def _fill(picture: Picture, boxes: npt.NDArray[np.float32], margin: float) -> Picture:
    """The picture with every box (normalised, widened by ``margin``) inpainted from its surroundings."""
    height, width = picture.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    for x1, y1, x2, y2 in boxes:
        grow_x, grow_y = (x2 - x1) * margin, (y2 - y1) * margin
        left, top = int(max(0.0, x1 - grow_x) * width), int(max(0.0, y1 - grow_y) * height)
        right = int(np.ceil(min(1.0, x2 + grow_x) * width))
        bottom = int(np.ceil(min(1.0, y2 + grow_y) * height))
        mask[top:bottom, left:right] = 255
    if not mask.any():
        return picture
    bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    # Telea's inpainting fills from the border inwards: nothing of what was inside the box is used.
    filled = cv2.inpaint(bgr, mask, 5, cv2.INPAINT_TELEA)
    return np.asarray(cv2.cvtColor(filled, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _found(
    picture: Picture, detect_objects: DetectObjects, detect_faces: DetectFaces, params: ViewParams
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], Detections, FaceBoxes]:
    detections = detect_objects(picture)
    faces = detect_faces(picture)
    objects = _people_and_vehicles(detections, params.object_threshold)
    face_boxes = faces[0][faces[1] >= params.face_threshold]
    return objects, face_boxes, detections, faces


def _encode(picture: Picture, params: ViewParams) -> bytes | None:
    """JPEG of at most ``max_bytes``: lower quality first, then a smaller picture; None if impossible."""
    bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    for side_scale in (1.0, 0.75, 0.5):
        scaled = bgr if side_scale == 1.0 else cv2.resize(bgr, None, fx=side_scale, fy=side_scale)
        for quality in (params.jpeg_quality, 70, 50):
            ok, encoded = cv2.imencode(".jpg", scaled, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(encoded) <= params.max_bytes:
                return encoded.tobytes()
    return None


def build_scene_view(
    frames: Sequence[Picture],
    detect_objects: DetectObjects,
    detect_faces: DetectFaces,
    *,
    blank: Callable[[Picture], None] | None = None,
    params: ViewParams = ViewParams(),  # frozen, so safe as a default
) -> SceneView | ViewRefused:
    """The view of the scene these frames show (RGB, one size, sampled over minutes), or why not.

    ``detect_objects`` gives a picture's counted-class detections (decoded at or below
    ``params.object_threshold``); ``detect_faces`` its faces; ``blank`` blanks the camera's privacy masks
    in place (ingest already blanked them in every frame; done again on the view itself).
    """
    if len(frames) < params.min_frames:
        return ViewRefused(
            f"{len(frames)} frame(s) sampled, {params.min_frames} needed: the median of fewer would keep "
            "passers-by"
        )
    try:
        view = temporal_median(frames)
    except ValueError as error:
        return ViewRefused(f"the frames cannot make one picture: {error}")
    for _ in range(params.fill_passes):
        objects, faces, _, _ = _found(view, detect_objects, detect_faces, params)
        if not len(objects) and not len(faces):
            break
        view = _fill(view, np.concatenate([objects, faces]) if len(faces) else objects, params.margin)
    if blank is not None:
        view = np.array(view)  # writable
        blank(view)
    objects, faces, detections, found_faces = _found(view, detect_objects, detect_faces, params)
    people = detections.select(
        (detections.scores >= params.object_threshold) & (detections.classes == CountedClass.PERSON)
    )
    if len(people):
        return ViewRefused(
            f"a person is still detected after filling (score {float(people.scores.max()):.2f}, threshold "
            f"{params.object_threshold}): the scene is too busy; try again later or with more frames"
        )
    if len(faces):
        return ViewRefused(
            f"a face is still detected after filling (score {float(found_faces[1].max()):.2f}, threshold "
            f"{params.face_threshold})"
        )
    if len(objects):
        return ViewRefused(
            f"a vehicle is still detected after filling (score {float(detections.scores.max()):.2f}): its "
            "plate could remain; try again later"
        )
    jpeg = _encode(view, params)
    if jpeg is None:
        return ViewRefused(f"the view cannot be made smaller than {params.max_bytes} bytes")
    height, width = view.shape[:2]
    return SceneView(jpeg=jpeg, width=width, height=height, frames=len(frames))
