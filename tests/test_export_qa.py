"""World2VLM QA export: action grid, boxes, validator, and small real exports from both sources
(simulated: MuJoCo renders; imagined: an imagination that renders the simulator, read back with
the optical-flow path estimator), validated and resumed."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from envs.geometry import apply_relative, relative_pose  # noqa: E402
from envs.types import Box2D, Pose  # noqa: E402
from v4s_agent.qa.actions import (  # noqa: E402
    ActionSpace,
    Motion,
    Step,
    compose,
    fit_program,
    frame_poses,
    max_displacement_index,
    motion_of,
    parse_program,
    perturb,
    prefix_at,
    program_text,
)
from v4s_agent.qa.boxes import BoxFilter, normalise  # noqa: E402
from v4s_agent.qa.validate import ValidatorConfig, record_reasons, validate_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ actions
def test_step_text_roundtrip_and_grid():
    for s in (Step("forward", 18), Step("shift-left", 8), Step("turn-right", 5), Step("backward", 30)):
        assert Step.parse(s.text()) == s
    assert Step("shift-left", 8).text() == "move left 0.8 meters"
    assert Step("turn-left", 10).text() == "turn left 100 degrees"
    assert parse_program("move forward 1.8 meters; turn left 50 degrees") == (Step("forward", 18), Step("turn-left", 5))
    with pytest.raises(ValueError, match="grid"):
        Step.parse("move forward 0.25 meters")
    with pytest.raises(ValueError, match="not an action"):
        Step.parse("walk forward 1 meters")


def test_compose_matches_shared_geometry():
    """Our egocentric actions are envs.geometry.apply_relative moves (Habitat: -Z forward, left = +yaw)."""
    ref = Pose((1.0, 0.88, 2.0), 0.7)
    prog = (Step("shift-left", 8), Step("forward", 28), Step("turn-right", 5))
    pose = ref
    for s in prog:
        T = s.matrix()
        yaw = math.atan2(-T[2, 0], T[0, 0]) if s.is_turn else 0.0
        pose = apply_relative(pose, T[:3, 3], np.array([yaw, 0.0, 0.0]))
    dt, dr = relative_pose(ref, pose)
    m = motion_of(prog)
    assert np.allclose([m.right, m.forward], [dt[0], -dt[2]], atol=1e-9)
    assert math.isclose(math.radians(m.yaw_deg), dr[0], abs_tol=1e-9)
    assert np.allclose(m.as_list(), [-0.8, 2.8, -50.0], atol=1e-6)
    turned = motion_of((Step("turn-left", 9), Step("forward", 10)))  # turn left then walk: ends up on the left
    assert np.allclose([turned.right, turned.forward, turned.yaw_deg], [-1.0, 0.0, 90.0], atol=1e-9)


def test_frames_and_max_displacement_pairing():
    prog = (Step("forward", 20), Step("turn-left", 6))
    poses, where = frame_poses(prog, 20)
    assert np.allclose(poses[0], np.eye(4)) and np.allclose(poses[-1], compose(prog))
    valid = np.ones(20, bool)
    assert max_displacement_index(poses, valid) == 19
    valid[8:] = False  # a wall after frame 7: pair with the farthest frame of the valid prefix
    k = max_displacement_index(poses, valid)
    assert k == 7
    pre = prefix_at(prog, where[k])
    assert len(pre) == 1 and pre[0].kind == "forward" and 0 < pre[0].units < 20
    assert motion_of(pre).forward <= Motion.from_matrix(poses[k]).forward + 1e-9  # floored, never past the frame
    assert max_displacement_index(poses, np.r_[True, np.zeros(19, bool)]) == 0


def test_perturb_never_returns_an_equivalent_program():
    rng = np.random.default_rng(0)
    space = ActionSpace()
    for _ in range(200):
        prog = space.sample(["translation", "rotation", "multi"][int(rng.integers(3))], rng)
        bad = perturb(prog, rng)
        dt, dy = motion_of(bad).distance(motion_of(prog))
        assert dt >= 0.5 or dy >= 20.0, (program_text(prog), program_text(bad))
    # two translations commute: swapping them is not a wrong claim, so perturb must do something else
    two = (Step("shift-left", 5), Step("forward", 10))
    assert motion_of(perturb(two, np.random.default_rng(1))).distance(motion_of(two))[0] >= 0.5


def test_fit_program_recovers_magnitudes_and_direction():
    for prog in [(Step("forward", 17),), (Step("turn-right", 4),), (Step("turn-right", 6), Step("forward", 12)),
                 (Step("shift-left", 8), Step("forward", 28), Step("turn-right", 5))]:
        assert fit_program([s.kind for s in prog], motion_of(prog)) == prog
    # the structure says forward, the motion went backward: the sign flips the direction
    assert fit_program(["forward"], Motion(0.0, -0.7, 0.0)) == (Step("backward", 7),)


# ------------------------------------------------------------------------------------------ boxes
def test_box_normalisation_and_paper_filter():
    f = BoxFilter()
    assert normalise(Box2D(16, 32, 48, 64), 64, 64) == (250, 500, 750, 1000)
    assert f.reason((250, 400, 750, 900)) is None
    assert f.reason((250, 500, 750, 1000)) == "border"  # touches the bottom edge (1% margin)
    assert f.reason((500, 500, 560, 560)) == "area_small"  # 0.36% of the image
    assert f.reason((20, 20, 980, 980)) == "area_large"
    assert f.reason((300, 300, 600, 600), score=0.2) == "low_score"
    assert f.reason((600, 300, 300, 600)) == "invalid_box"
    with pytest.raises(ValueError, match="min_area"):
        BoxFilter(min_area=0.7, max_area=0.6)


# ------------------------------------------------------------------------------------------ exports
def _run(*args: str, timeout: int = 240) -> tuple[int, dict, str]:
    p = subprocess.run([sys.executable, "-m", "v4s_agent.export_qa", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = p.stdout.strip().splitlines()
    return p.returncode, (json.loads(lines[-1]) if lines else {}), p.stderr


@pytest.fixture(scope="module")
def sim_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("qa") / "sim"
    rc, s, err = _run("source=simulated", "split=val", "n=24", f"out={out}", "scenes=3")
    assert rc == 0, err[-2000:]
    assert s["records"] == 24 and s["per_task"] == {t: 3 for t in ("A1", "A2", "A3", "A4", "D1", "D2", "D3", "D4")}
    assert s["answer_source"] == {"ground_truth": 24} and s["flagged_total"] == 0
    return out


def test_simulated_export_validates_and_is_consistent(sim_export):
    rep = validate_file(sim_export / "records.jsonl")
    assert rep.total == 24 and rep.valid == 24, rep.summary()
    recs = [json.loads(x) for x in (sim_export / "records.jsonl").read_text().splitlines()]
    for r in recs:
        assert r["answer"] == r["metadata"]["gt_answer"] and r["source"] == "simulated"
        assert all((sim_export / p).is_file() for p in r["images"])
    # D1's answer is a proper box on the saved endpoint render
    import cv2

    d1 = next(r for r in recs if r["task"] == "D1")
    img = cv2.imread(str(sim_export / d1["images"][1]))
    assert img.shape == (128, 128, 3)
    b = [int(v) for v in d1["answer"].strip("[]").split(", ")]
    assert 0 <= b[0] < b[2] <= 1000 and 0 <= b[1] < b[3] <= 1000


def test_export_resumes_after_interruption(sim_export, tmp_path):
    """Kill mid-trajectory (torn line, missing commit mark) -> rerun -> identical records, no duplicates."""
    import shutil

    out = tmp_path / "resume"
    shutil.copytree(sim_export, out)
    full = (out / "records.jsonl").read_text().splitlines()
    trajs = (out / "trajectories.jsonl").read_text().splitlines()
    (out / "trajectories.jsonl").write_text("\n".join(trajs[:-3]) + "\n")  # last 3 trajectories never committed
    (out / "records.jsonl").write_text("\n".join(full) + "\n" + full[-1][:40])  # torn append
    from v4s_agent.export_qa import ExportConfig, export

    s = export(ExportConfig(source="simulated", split="val", n=24, out=str(out), scenes=3), progress=False)
    assert s["resumed"] is True and s["records"] == 24
    assert (out / "records.jsonl").read_text().splitlines() == full  # deterministic regeneration
    s = export(ExportConfig(source="simulated", split="val", n=32, out=str(out), scenes=3), progress=False)
    ids = [json.loads(x)["id"] for x in (out / "records.jsonl").read_text().splitlines()]
    assert s["records"] == 32 and len(set(ids)) == 32 and validate_file(out / "records.jsonl").valid == 32
    with pytest.raises(ValueError, match=r"other settings \(scenes\)"):
        export(ExportConfig(source="simulated", split="val", n=24, out=str(out), scenes=4), progress=False)


def test_cli_rejects_bad_arguments(capsys):
    from v4s_agent.export_qa import main

    for args, needle in ((["source=dreamed"], "source must be one of ('simulated', 'imagined')"), (["n=ten"], "n='ten'"),
                         (["colour=red"], "unknown key 'colour'"), (["tasks=A1,Z9"], "tasks must be"),
                         (["validate", "path=/nonexistent/records.jsonl"], "no records file")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and err.count("\n") == 1


def _corrupt(rec: dict, **changes) -> dict:
    r = json.loads(json.dumps(rec))
    for k, v in changes.items():
        if k.startswith("meta_"):
            r["metadata"][k[5:]] = v
        else:
            r[k] = v
    return r


def test_validator_rejects_malformed_records_with_reasons(sim_export, tmp_path):
    recs = {r["task"]: r for r in map(json.loads, (sim_export / "records.jsonl").read_text().splitlines())}
    root = sim_export
    cfg = ValidatorConfig()
    cases = [
        (_corrupt(recs["D3"], answer="move forward 1.2 meters;; turn left 30 degrees"), "bad_action_format"),
        (_corrupt(recs["D3"], answer="move forward 0.2 meters; turn left 10 degrees; move left 0.1 meters"), "bad_action_format"),
        (_corrupt(recs["A1"], answer="move forward 0 meters"), "bad_action_magnitude"),
        (_corrupt(recs["A1"], answer="move forward 5.5 meters"), "action_trajectory_mismatch"),
        (_corrupt(recs["A2"], answer="turn left by 40 degrees"), "bad_answer_format"),
        (_corrupt(recs["A4"], answer="false" if recs["A4"]["answer"] == "true" else "true"), "action_trajectory_mismatch"),
        (_corrupt(recs["A4"], answer="maybe"), "bad_answer_format"),
        (_corrupt(recs["D1"], answer="[500, 400, 300, 700]"), "invalid_box"),
        (_corrupt(recs["D1"], answer="[0, 0, 990, 990]"), "box_filter"),
        (_corrupt(recs["D2"], images=recs["A1"]["images"]), "image_count"),
        (_corrupt(recs["A3"], images=["images/nope.png", "images/nope2.png"]), "missing_image"),
        (_corrupt(recs["A3"], answer_source="readback"), "bad_source"),
        (_corrupt(recs["D4"], task="D9"), "unknown_task"),
        (_corrupt(recs["D4"], options=["yes"]), "bad_options"),
        ({k: v for k, v in recs["A1"].items() if k != "question"}, "missing_field"),
    ]
    for rec, reason in cases:
        assert record_reasons(rec, root, cfg)[:1] == [reason], (reason, rec["answer"] if "answer" in rec else rec)
    for r in recs.values():
        assert record_reasons(r, root, cfg) == []
    path = tmp_path / "records.jsonl"
    (tmp_path / "images").symlink_to(sim_export / "images")  # image paths are relative to the file
    path.write_text("".join(json.dumps(r) + "\n" for r, _ in cases) + json.dumps(recs["A1"]) + "\n"
                    + json.dumps(recs["A1"]) + "\n{not json\n")
    rep = validate_file(path).summary()
    assert rep["valid"] == 1 and rep["total"] == len(cases) + 3
    assert rep["rejected"]["duplicate_id"] == 1 and rep["rejected"]["bad_json"] == 1
    assert rep["rejected"]["bad_action_format"] == 2 and rep["rejected"]["action_trajectory_mismatch"] == 2
    rc, s, _ = _run("validate", f"path={path}")
    assert rc == 1 and s["rejected_total"] == len(cases) + 2


def test_imagined_export_answers_from_readback(tmp_path):
    """source=imagined end to end with an imagination that renders the simulator (a perfect
    generator): answers come from the flow read-back + boxes at the read-back pose; most agree with
    ground truth, the rest are flagged with their ground-truth answer kept."""
    from envs.embedded.config import WorldConfig
    from envs.embedded.world import EmbeddedWorld
    from envs.geometry import matrix_to_pose
    from envs.splits import split_seeds
    from planners.oracle import OracleImagination
    from v4s_agent.qa.sources import ImaginedSource, SkipTrajectory
    from v4s_agent.qa.tasks import Skip, TaskBuilder, Tolerances
    from v4s_agent.qa.validate import Validator
    from v4s_agent.qa.writers import ExportWriter

    class AnchoredOracle(OracleImagination):  # starts from the context's last pose, not the agent's
        def navigate(self, context, waypoints, num_samples=1, seed=0):
            self._anchor = matrix_to_pose(context.poses[-1])
            return super().navigate(context, waypoints, num_samples, seed)

        def _current(self):
            return self._anchor

    world = EmbeddedWorld(WorldConfig(width=128, height=128), scene_seed=split_seeds("val", 1)[0])
    src = ImaginedSource(world, AnchoredOracle(world))
    writer = ExportWriter(tmp_path / "img", {"test": 1})
    val = Validator(writer.out)
    made, flagged, agree_motion = [], 0, 0
    for ti in range(6):
        rng = np.random.default_rng([0, ti])
        try:
            tr = src.make(ti, split_seeds("val", 1)[0], rng, ["A1", "A2", "A3", "A4", "D1", "D2", "D3", "D4"])
        except SkipTrajectory:
            continue
        assert tr.readback["method"].startswith("flow") and tr.target_rgb.shape == (64, 64, 3)
        dt, dy = tr.motion_answer.distance(tr.motion_gt)
        agree_motion += dt <= 0.5 and dy <= 10
        imgs = (writer.image(f"t{ti}_a", tr.anchor_rgb), writer.image(f"t{ti}_b", tr.target_rgb))
        b = TaskBuilder(tr, imgs, rng, Tolerances(), "val")
        good = []
        for task in ("A1", "A2", "A3", "A4", "D1", "D2", "D3", "D4"):
            try:
                rec = b.build(task).to_json()
            except Skip:
                continue
            assert rec["source"] == "imagined" and rec["answer_source"] == "readback"
            assert rec["metadata"]["gt_answer"] != "" or rec["task"] in ("D1", "D2")
            if rec["metadata"]["flagged"]:
                flagged += 1
                assert rec["metadata"]["flag_reasons"]
            elif rec["task"] in ("A1", "A2", "A3", "D3"):
                assert motion_of(parse_program(rec["answer"])).close_to(
                    motion_of(parse_program(rec["metadata"]["gt_answer"])), 0.5, 10.0)
            if not val.check(rec):
                good.append(rec)
        writer.write_trajectory(good, [], {"traj_index": ti, "status": "ok"})
        made += good
    world.close()
    assert len(made) >= 10
    assert agree_motion >= 4, "the flow read-back of perfect renders should mostly recover the commanded motion"
    rep = validate_file(writer.records_path)
    assert rep.valid == rep.total == len(made)
