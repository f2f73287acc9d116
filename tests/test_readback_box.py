"""Red-box read-back on simulator frames: clean and degraded boxes found, no box -> None."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import cv2
import numpy as np
import pytest

from envs.embedded.config import WorldConfig
from envs.embedded.world import EmbeddedWorld
from envs.splits import split_seeds
from envs.types import Box2D
from models.red_box import box_scores, detect_red_box, detect_red_box_frame, draw_red_box
from planners.readback.sim_truth import downsample


@pytest.fixture(scope="module")
def views():
    """(frames 128 px, gt boxes of the largest visible object per frame) from val scenes."""
    w = EmbeddedWorld(WorldConfig(), scene_seed=split_seeds("val", 1)[0])
    rng = np.random.default_rng(0)
    frames, boxes = [], []
    for seed in split_seeds("val", 4):
        w.load_scene(seed)
        while len(frames) < 3 * (seed - split_seeds("val", 1)[0] + 1):
            xz = w.navgrid.sample_navigable(rng)
            obs = w.render_at(w.centring_pose(int(rng.choice([o.instance_id for o in w.scene.objects])), from_xz=xz, pitch=False))
            gt = [b for b in w.gt_boxes(obs, min_pixels=150) if 20 <= b.width <= 110 and 20 <= b.height <= 110]
            if gt:
                frames.append(obs.rgb)
                boxes.append(max(gt, key=lambda b: b.area))
    w.close()
    return np.stack(frames), boxes


def _degrade(img: np.ndarray, kind: str, rng: np.random.Generator, box: Box2D, clean: np.ndarray) -> np.ndarray:
    if kind == "clean":
        return img
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), 0.8)
    if kind == "noise":
        return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    if kind == "colour":  # off-colour: dark, slightly orange red
        red = (img[..., 0] == 255) & (img[..., 1] == 0)
        out = img.copy()
        out[red] = (200, 55, 40)
        return out
    if kind == "broken":  # a third of the top edge missing
        out = img.copy()
        x0 = int(box.x0 + box.width / 3)
        out[int(box.y0) : int(box.y0) + 3, x0 : x0 + int(box.width / 3)] = clean[int(box.y0) : int(box.y0) + 3, x0 : x0 + int(box.width / 3)]
        return out
    if kind == "all":
        return _degrade(_degrade(_degrade(_degrade(img, "broken", rng, box, clean), "colour", rng, box, clean), "blur", rng, box, clean), "noise", rng, box, clean)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["clean", "blur", "noise", "colour", "broken", "all"])
def test_box_found_on_sim_frames_at_model_resolution(views, kind):
    frames, boxes = views
    small = downsample(frames, 64)
    rng = np.random.default_rng(1)
    ious, scores = [], []
    for f, b in zip(small, boxes):
        gt = Box2D(b.x0 / 2, b.y0 / 2, b.x1 / 2, b.y1 / 2)
        img = _degrade(draw_red_box(f, (gt.x0, gt.y0, gt.x1, gt.y1)), kind, rng, gt, f)
        d = detect_red_box(img)
        assert d is not None, f"{kind}: box {gt} not found"
        ious.append(d.iou(gt))
        scores.append(d.score)
    assert min(ious) >= 0.7, (kind, ious)
    assert 0.35 <= min(scores) and max(scores) <= 1.0


def test_no_box_on_plain_sim_frames(views):
    frames, _ = views
    for f in list(frames) + list(downsample(frames, 64)):
        assert detect_red_box(f) is None


def test_video_box_frames_and_filled_red_blob(views):
    frames, boxes = views
    small = downsample(frames, 64)
    b = boxes[0]
    gt = (b.x0 / 2, b.y0 / 2, b.x1 / 2, b.y1 / 2)
    video = np.concatenate([small[:4], np.stack([draw_red_box(small[0], gt)] * 4)])
    s = box_scores(video)
    assert np.all(s[:4] == 0) and np.all(s[4:] > 0.8)
    d = detect_red_box(video)
    assert d is not None and d.iou(Box2D(*gt)) > 0.8
    blob = small[1].copy()
    blob[20:40, 20:40] = (230, 20, 20)  # a filled red patch is not an outline
    det = detect_red_box_frame(blob)
    assert det is None or det.score < 0.35


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="uint8"):
        detect_red_box(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        detect_red_box(np.zeros((8, 8), np.uint8))
