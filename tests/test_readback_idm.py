"""Inverse-dynamics read-back: the shipped checkpoint on held-out (val-split) simulator clips,
and the train/save/load round trip."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest
import torch

from envs.embedded.config import WorldConfig
from envs.embedded.world import EmbeddedWorld
from envs.splits import split_seeds
from planners.readback.inverse_dynamics import (
    DEFAULT_WEIGHTS,
    IDMConfig,
    InverseDynamics,
    idm_path,
    load_default_idm,
    load_idm,
    save_idm,
    train_inverse_dynamics,
)
from planners.readback.sim_truth import random_truth_clip

# Bounds with a margin over the shipped checkpoint (`python -m planners.readback.inverse_dynamics
# --out ...`, retrained with 4000 steps on 200 scenes after the renderer dropped MSAA; val 1200 pairs:
# forward MAE 0.057 m, yaw MAE 3.5 deg). On these clips (val scenes 10-15): yaw median 1.3 deg, 88%
# under 5 deg; forward median 0.042 m, 86% under 0.1 m, mean 0.051 m vs 0.071 for a constant guess.
YAW_MEDIAN_DEG, YAW_SHARE_5DEG = 3.5, 0.7
FWD_MEDIAN_M, FWD_SHARE_10CM = 0.05, 0.65


@pytest.fixture(scope="module")
def clips():
    w = EmbeddedWorld(WorldConfig(), scene_seed=split_seeds("val", 1)[0])
    out = []
    for seed in split_seeds("val", 20)[10:16]:  # val scenes; none was used in training
        w.load_scene(seed)
        out.append(random_truth_clip(w, np.random.default_rng(seed), num_frames=8, size=64, max_forward=0.3, max_yaw_deg=30))
    w.close()
    return out


def test_shipped_checkpoint_is_small_safetensors():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 4_000_000
    assert DEFAULT_WEIGHTS.read_bytes()[8:9] == b"{"  # safetensors header, not a pickle
    m = load_default_idm()
    assert "yaw_mae_deg" in m.meta  # validation numbers travel with the weights


def test_idm_path_on_val_scenes(clips):
    torch.set_num_threads(1)
    errs = []
    for c in clips:
        est = idm_path(c.frames)
        assert est.method == "idm" and est.steps.shape == (len(c.frames) - 1, 2) and 0.0 <= est.confidence <= 1.0
        errs.append(np.abs(est.steps - c.truth.steps))
    e = np.concatenate(errs)
    yaw_deg, fwd = np.degrees(e[:, 1]), e[:, 0]
    assert np.median(yaw_deg) < YAW_MEDIAN_DEG and np.mean(yaw_deg < 5.0) >= YAW_SHARE_5DEG, yaw_deg.round(1)
    assert np.median(fwd) < FWD_MEDIAN_M and np.mean(fwd < 0.1) >= FWD_SHARE_10CM, fwd.round(3)
    # it reads motion off the images: better than always guessing the mean step
    truth_fwd = np.concatenate([c.truth.steps[:, 0] for c in clips])
    assert fwd.mean() < 0.8 * np.abs(truth_fwd - truth_fwd.mean()).mean()


def test_train_save_load_round_trip(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "idm.safetensors"
    m = train_inverse_dynamics(out, steps=2, train_scenes=1, pairs_per_scene=3, val_scenes=1, batch=4,
                               cfg=IDMConfig(width=8), log=lambda s: None)
    assert out.is_file() and m["n"] == 3 and m["train_pairs"] == 3
    model = load_idm(out)
    x = np.random.default_rng(0).integers(0, 255, (2, 2, 64, 64, 3), dtype=np.uint8)
    ref = InverseDynamics(IDMConfig(width=8))
    ref.load_state_dict(model.state_dict())
    assert np.allclose(model.predict(x)[0], ref.predict(x)[0])
    save_idm(model, tmp_path / "again.safetensors")
    assert np.allclose(load_idm(tmp_path / "again.safetensors").predict(x)[0], model.predict(x)[0])
    with pytest.raises(FileNotFoundError, match="train them"):
        load_idm(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="uint8"):
        idm_path(np.zeros((3, 64, 64, 3), np.float32), model)
