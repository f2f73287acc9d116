"""The red-box convention on synthetic frames, pinned to exact pixels and scores: the outline drawn on
training clips, and its read-back (colour mask, outline score, per-video vote)."""
from __future__ import annotations

import numpy as np
import pytest

from models.red_box import (
    BoxDetectConfig,
    box_scores,
    detect_red_box,
    detect_red_box_frame,
    draw_red_box,
    red_box_thickness,
    redness,
)

GREY = 110


def _frame(size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), GREY, np.uint8)


def _red_mask(frame: np.ndarray) -> np.ndarray:
    return (frame == (255, 0, 0)).all(axis=-1)


def test_thickness_follows_the_smaller_side():
    assert [red_box_thickness(s, s) for s in (16, 48, 64, 128)] == [1, 2, 2, 4]
    assert red_box_thickness(64, 128) == red_box_thickness(128, 64) == 2


def test_redness_is_red_over_the_strongest_other_channel():
    px = np.array([[[255, 0, 0], [200, 100, 50], [50, 100, 200], [0, 255, 0], [GREY, GREY, GREY]]], np.uint8)
    r = redness(px)
    assert r.dtype == np.float32 and r.shape == (1, 5)
    np.testing.assert_allclose(r[0], [1.0, 100 / 255, 0.0, 0.0, 0.0], atol=1e-6)
    assert redness(np.stack([px, px])).shape == (2, 1, 5)


def test_draw_red_box_is_an_outline_of_the_box():
    frame = _frame()
    out = draw_red_box(frame, (10.4, 20, 30, 40))  # t = 2 px at 64x64; x1, y1 exclusive
    assert (frame == GREY).all()  # drawn on a copy
    want = np.zeros((64, 64), bool)
    want[20:40, 10:30] = True
    want[22:38, 12:28] = False
    np.testing.assert_array_equal(_red_mask(out), want)
    assert (out[~want] == GREY).all()
    # clipped to the image; a box thinner than the outline is filled
    clipped = _red_mask(draw_red_box(frame, (-5, -5, 100, 100)))
    np.testing.assert_array_equal(clipped[[0, 1, 2, 61, 62, 63], 30], [True, True, False, False, True, True])
    np.testing.assert_array_equal(clipped[30, [0, 1, 2, 61, 62, 63]], [True, True, False, False, True, True])
    np.testing.assert_array_equal(_red_mask(draw_red_box(frame, (-9, -9, -5, -5))), np.pad(np.ones((1, 1), bool), ((0, 63), (0, 63))))
    np.testing.assert_array_equal(_red_mask(draw_red_box(frame, (70, 70, 90, 90))), np.pad(np.ones((1, 1), bool), ((63, 0), (63, 0))))
    tiny = _red_mask(draw_red_box(frame, (5, 5, 8, 8)))
    assert tiny.sum() == 9 and tiny[5:8, 5:8].all()
    flat = _red_mask(draw_red_box(frame, (5, 5, 15, 6)))  # one row high
    assert flat.sum() == 10 and flat[5, 5:15].all()
    narrow = _red_mask(draw_red_box(frame, (5, 5, 6, 15)))  # one column wide
    assert narrow.sum() == 10 and narrow[5:15, 5].all()


def test_detect_config_ranges():
    BoxDetectConfig(redness_threshold=0.5, min_side_px=2, close_px=1, num_last=1)
    for bad, msg in (({"redness_threshold": 0.0}, "redness_threshold must be in"),
                     ({"redness_threshold": 1.0}, "redness_threshold must be in"),
                     ({"min_side_px": 1}, "min_side_px must be >= 2, got 1"),
                     ({"close_px": 0}, "close_px must be >= 1, got 0"),
                     ({"num_last": 0}, "num_last must be >= 1, got 0")):
        with pytest.raises(ValueError, match=msg):
            BoxDetectConfig(**bad)


def test_frames_are_checked():
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\).*shape \(64, 64\)"):
        detect_red_box_frame(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(1, 64, 64, 4\)"):
        detect_red_box_frame(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(1, 2, 64, 64, 3\)"):
        box_scores(np.zeros((1, 2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detect_red_box_frame(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="^frames is empty; pass at least one frame$"):
        box_scores(np.zeros((0, 64, 64, 3), np.uint8))


def test_clean_box_is_found_exactly_with_full_score():
    box = detect_red_box_frame(draw_red_box(_frame(), (10, 20, 30, 40)))
    assert (box.x0, box.y0, box.x1, box.y1, box.label) == (10.0, 20.0, 30.0, 40.0, "red_box")
    assert box.score == pytest.approx(1.0)


def test_no_box_in_plain_frames_dots_or_small_rectangles():
    assert detect_red_box_frame(_frame()) is None
    dot = _frame()
    dot[30:32, 30:33] = (255, 0, 0)  # 6 red pixels < 2 * min_side_px
    assert detect_red_box_frame(dot) is None
    small = draw_red_box(_frame(), (30, 30, 33, 33))  # 3 px wide: below min_side_px = 4
    assert detect_red_box_frame(small) is None
    assert detect_red_box_frame(draw_red_box(_frame(), (30, 30, 34, 34))) is not None
    corner = _frame()
    corner[30, 30:34] = corner[31:34, 30] = (255, 0, 0)  # 7 red pixels: fewer than 2 * min_side_px
    assert detect_red_box_frame(corner) is None
    corner[30, 34] = (255, 0, 0)  # 8: scored (an open corner scores low, but it is looked at)
    assert detect_red_box_frame(corner) is not None
    bar = _frame()
    bar[30:33, 10:40] = (255, 0, 0)  # 3 px high: below min_side_px
    assert detect_red_box_frame(bar) is None


def test_outline_score_terms():
    # colour: a weaker red (redness 110/255 = 0.431) scales the score by 0.431 / 0.45
    weak = _frame()
    weak[_red_mask(draw_red_box(_frame(), (10, 20, 30, 40)))] = (230, 120, 120)
    assert detect_red_box_frame(weak).score == pytest.approx((110 / 255) / 0.45, abs=1e-4)
    assert detect_red_box_frame(weak, BoxDetectConfig(redness_threshold=0.45)) is None  # below the mask threshold
    # fill: red inside the outline costs 2 x the filled share of the interior (12 of 12 x 12 inner pixels)
    filled = draw_red_box(_frame(), (10, 20, 30, 40))
    filled[30, 10:30] = (255, 0, 0)
    assert detect_red_box_frame(filled).score == pytest.approx(1.0 - 2.0 * 12 / 144, abs=1e-4)
    # coverage: the mean side coverage, scaled down once the weakest side covers under 40 % of its length
    for erased, side in ((range(22, 34), 8 / 20), (range(22, 36), 6 / 20)):
        gap = draw_red_box(_frame(), (10, 20, 30, 40))
        gap[list(erased), 28:30] = GREY
        want = (3 + side) / 4 * min(1.0, side / 0.4)
        assert detect_red_box_frame(gap).score == pytest.approx(want, abs=1e-4)
    # colour is averaged over the outline band only: a stronger red line inside counts where it crosses the band
    mixed = _frame()
    mixed[_red_mask(draw_red_box(_frame(), (10, 20, 30, 40)))] = (230, 120, 120)  # redness 110/255
    mixed[30, 10:30] = (255, 120, 120)  # redness 135/255; inside the band at x = 10..12 and 27..29
    colour = (140 * 110 / 255 + 6 * 135 / 255) / 146 / 0.45
    assert detect_red_box_frame(mixed).score == pytest.approx(colour * (1.0 - 2.0 * 12 / 144), abs=1e-4)
    # the same with a vertical line: the interior is measured across its width too
    upright = draw_red_box(_frame(), (10, 20, 30, 40))
    upright[20:40, 20] = (255, 0, 0)
    assert detect_red_box_frame(upright).score == pytest.approx(1.0 - 2.0 * 12 / 144, abs=1e-4)
    # a box with no interior inside its outline band cannot be told from a filled bar: score 0
    assert detect_red_box_frame(draw_red_box(_frame(), (10, 20, 30, 28))).score == 0.0
    assert detect_red_box_frame(draw_red_box(_frame(), (10, 20, 18, 40))).score == 0.0
    assert detect_red_box_frame(draw_red_box(_frame(), (10, 20, 30, 29))).score > 0.9
    # a filled blob is not an outline
    blob = _frame()
    blob[20:40, 10:30] = (255, 0, 0)
    assert detect_red_box_frame(blob).score == 0.0


def test_the_first_of_equal_boxes_wins_and_small_pieces_are_skipped():
    two = draw_red_box(draw_red_box(_frame(), (4, 4, 24, 24)), (36, 36, 56, 56))
    assert (detect_red_box_frame(two).x0, detect_red_box_frame(two).score) == (4.0, pytest.approx(1.0))
    line_first = draw_red_box(_frame(), (10, 20, 30, 40))
    line_first[5, 10:20] = (255, 0, 0)  # a thin red line above the box is skipped, not the end of the search
    assert detect_red_box_frame(line_first).y0 == 20.0


def test_broken_outline_is_joined_from_its_pieces():
    frame = draw_red_box(_frame(), (10, 20, 40, 50))
    frame[20:24, 20:30] = GREY  # top side cut
    frame[46:50, 20:30] = GREY  # bottom side cut: two separate pieces
    box = detect_red_box_frame(frame)
    assert (box.x0, box.y0, box.x1, box.y1) == (10.0, 20.0, 40.0, 50.0)
    assert box.score == pytest.approx((1 + 1 + 2 / 3 + 2 / 3) / 4, abs=1e-4)


def test_box_scores_per_frame():
    video = np.stack([_frame(), draw_red_box(_frame(), (10, 20, 30, 40)), _frame()])
    scores = box_scores(video)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, [0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(box_scores(video[1]), [1.0], atol=1e-6)
    weak = _frame()
    weak[_red_mask(video[1])] = (230, 120, 120)  # redness 0.43
    assert box_scores(weak)[0] > 0.9
    assert box_scores(weak, BoxDetectConfig(redness_threshold=0.45))[0] == 0.0  # the thresholds are used


def test_detect_red_box_votes_over_the_last_frames():
    def boxed(x0):
        return draw_red_box(_frame(), (x0, 20, x0 + 20, 40))

    video = np.stack([boxed(10), _frame(), _frame(), _frame(), _frame()])
    assert detect_red_box(video) is None  # the box is not in the last 4 frames
    assert detect_red_box(video, cfg=BoxDetectConfig(num_last=5)) is not None
    # the median of the agreeing detections; a frame whose box disagrees (IoU <= 0.5) is left out
    video = np.stack([boxed(10), boxed(12), boxed(16), boxed(40)])
    box = detect_red_box(video)
    assert (box.x0, box.y0, box.x1, box.y1, box.label) == (12.0, 20.0, 32.0, 40.0, "red_box")
    # agreement is IoU strictly above 0.5: a box twice as tall (IoU exactly 0.5) is left out
    tall = draw_red_box(_frame(), (10, 20, 30, 60))
    box = detect_red_box(np.stack([boxed(10), tall]))
    assert (box.x0, box.y0, box.x1, box.y1) == (10.0, 20.0, 30.0, 40.0)
    assert box.score == pytest.approx(1.0)
    weak = _frame()
    weak[_red_mask(boxed(10))] = (230, 120, 120)
    s = detect_red_box_frame(weak).score
    assert detect_red_box(np.stack([boxed(10), weak]), min_confidence=0.0).score == pytest.approx((1.0 + s) / 2)
    assert detect_red_box(weak, min_confidence=s) is not None  # at least min_confidence
    assert detect_red_box(weak, min_confidence=s + 1e-3) is None
    assert detect_red_box(boxed(10), min_confidence=1.0) is not None
    assert detect_red_box(weak, min_confidence=0.0, cfg=BoxDetectConfig(redness_threshold=0.45)) is None
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match=r"min_confidence must be in \[0, 1\]"):
            detect_red_box(boxed(10), min_confidence=bad)
