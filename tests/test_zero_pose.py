"""The zero-pose reference of navigation cameras (`zero_pose=first|random`): which target frame's
camera is the origin, in training and in sampling, and that both build the same camera maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.conditioning import pick_reference, relative_to, waypoints_to_c2w

F = 8  # target frames; the tiny codec gives cameras at frames 0, 2, 4, 6


def _waypoints() -> np.ndarray:
    way = np.zeros((F, 6))
    way[:, 2] = -np.linspace(0, 0.7, F)  # forward
    way[:, 3] = np.linspace(0, 2.4, F)  # 137° of turning
    return way


def _clip():
    from synthetic_clips import make_clip

    clip = make_clip("navigation", seed=3, size=32, num_frames=F, num_context=6)
    T0 = clip.context_poses[-1].astype(np.float64)  # the current view: last context frame = first target frame
    clip.target_poses = (T0[None] @ waypoints_to_c2w(_waypoints())).astype(np.float32)
    return clip


def _sampled_cameras(pipe, clip, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(target cameras, context cameras) the transformer gets when sampling with `seed`."""
    from models.types import VideoContext

    got = []

    def hook(module, args, kw):
        ctx = kw.get("context_camera")
        got.append((kw["camera"][0].clone(), None if ctx is None else ctx[0].clone()))

    h = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        out = pipe(VideoContext(clip.context_frames, clip.context_indices, poses=clip.context_poses),
                   waypoints=_waypoints(), num_inference_steps=1, seed=seed, use_context_cache=False)
    finally:
        h.remove()
    assert out.meta["reference_frame"] == pipe.reference_frame(seed)
    return got[0]


def test_pick_reference():
    sources = [0, 2, 4, 6]
    assert pick_reference("first", sources, np.random.default_rng(0)) == 0
    assert pick_reference("random", sources, None) == 0  # no generator (validation): the first frame
    drawn = {pick_reference("random", sources, np.random.default_rng(s)) for s in range(40)}
    assert drawn == set(sources)  # every frame with a camera, and only those
    c2w = waypoints_to_c2w(_waypoints())
    np.testing.assert_allclose(relative_to(c2w, 4)[4], np.eye(4), atol=1e-12)
    with pytest.raises(ValueError, match="zero_pose"):
        pick_reference("last", sources, None)


@pytest.mark.parametrize("zero_pose,context_poses", [("first", False), ("random", False), ("random", True)])
def test_training_and_sampling_use_the_same_zero_pose(zero_pose, context_poses):
    """The sampler's camera for a seed is the maps relative to its reference frame; the trainer's
    batch with that reference drawn builds the identical maps. `first` keeps frame 0 for every seed,
    `random` moves the origin (and so changes the maps) for some seeds. With context cameras, those
    share the same origin in both."""
    from models.pipeline import tiny_pipeline
    from models.train import ClipEncoder, TrainConfig, make_batch

    pipe = tiny_pipeline(seed=0, num_frames=F, num_box_frames=0, height=32, width=32, zero_pose=zero_pose,
                         context_poses=context_poses)
    clip = _clip()
    sources = pipe.codec.latent_frame_sources(F)
    refs = {s: pipe.reference_frame(s) for s in range(12)}
    if zero_pose == "first":
        assert set(refs.values()) == {0}
    else:
        assert len(set(refs.values())) > 1 and set(refs.values()) <= set(sources)
    seed = max(refs, key=lambda s: refs[s])  # the seed with the latest reference
    k = refs[seed]
    cam, ctx_cam = _sampled_cameras(pipe, clip, seed)
    want = pipe.camera_for(relative_to(waypoints_to_c2w(_waypoints()), k), F)
    torch.testing.assert_close(cam.float(), want, rtol=0, atol=1e-6)
    first = pipe.camera_for(relative_to(waypoints_to_c2w(_waypoints()), 0), F)
    assert torch.equal(want, first) == (k == 0)

    cfg = TrainConfig(data="unused", out="unused", zero_pose=zero_pose)
    rng = next(np.random.default_rng(s) for s in range(100)
               if pick_reference(zero_pose, sources, np.random.default_rng(s)) == k)
    batch = make_batch(pipe, ClipEncoder(pipe, [clip]), [0], cfg, np.random.default_rng(0), dropout=False,
                       reference_rng=rng)
    torch.testing.assert_close(batch["camera"][0].float(), cam.float(), rtol=0, atol=1e-5)
    if context_poses:  # every context frame's camera relative to target frame k (its identity map is frame k's)
        want_ctx = pipe.context_camera_for(clip.context_poses, origin=clip.target_poses[k])
        torch.testing.assert_close(ctx_cam.float(), want_ctx, rtol=0, atol=1e-5)
        torch.testing.assert_close(batch["context_camera"][0].float(), ctx_cam.float(), rtol=0, atol=2e-3)  # fp16
        assert not torch.allclose(want_ctx, pipe.context_camera_for(clip.context_poses), atol=1e-3)
    else:
        assert ctx_cam is None
    # validation (no reference generator) keeps the first frame whatever the option
    val = make_batch(pipe, ClipEncoder(pipe, [clip]), [0], cfg, np.random.default_rng(0), dropout=False)
    torch.testing.assert_close(val["camera"][0].float(), first, rtol=0, atol=1e-6)


def test_zero_pose_is_stored_and_old_folders_sample_from_the_first_frame(tmp_path):
    """The option travels with the exported pipeline; a folder written before it existed (no key)
    loads as `first`, which is how the shipped model was trained."""
    import json

    from models.pipeline import DEFAULT_CHECKPOINT, ImaginationConfig, ImaginationPipeline, tiny_pipeline

    pipe = tiny_pipeline(seed=0, num_frames=F, num_box_frames=0, height=32, width=32, zero_pose="random")
    pipe.save_pretrained(tmp_path / "p")
    assert ImaginationPipeline.from_pretrained(tmp_path / "p").settings.zero_pose == "random"
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    del index["v4s"]["zero_pose"]
    (tmp_path / "p" / "model_index.json").write_text(json.dumps(index))
    assert ImaginationPipeline.from_pretrained(tmp_path / "p").settings.zero_pose == "first"
    with pytest.raises(ValueError, match="zero_pose"):
        ImaginationPipeline.from_pretrained(tmp_path / "p", zero_pose="middle")
    shipped = json.loads((DEFAULT_CHECKPOINT / "model_index.json").read_text())["v4s"]
    assert ImaginationConfig.from_dict(shipped).zero_pose == "first"  # v4s-tiny was trained that way
