"""The trainer under `accelerate launch --num_processes 2` on the CPU (gloo) gives the losses and the
checkpoint of one process at the same global batch, and so does one process accumulating gradients
over 2 micro-batches (batch_size is the global batch; 5 steps, tiny model)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from synthetic_clips import make_clips

from models.clipstore import write_shard
from models.train import main

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["steps=5", "batch_size=4", "codec=random", "log_every=1", "warmup_steps=2", "lr=1e-3", "ckpt_every=100",
        "export_fp16=false", "threads=1"]


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "loss.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                    reason="the accelerate launcher is not installed beside this python")
def test_two_processes_match_one(tmp_path):
    data = tmp_path / "clips"
    write_shard(make_clips(8, num_frames=6, num_box_frames=2, num_context=4), data / "s0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # --multi_gpu picks the torchrun launcher; ACCELERATE_USE_CPU makes it CPU processes talking over gloo
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        "--main_process_port", str(port), "-m", "models.train", f"data={data}", f"out={tmp_path / 'two'}",
                        *ARGS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('"steps": 5,') == 2  # both ranks ran and finished (their summary lines may interleave)
    assert main([f"data={data}", f"out={tmp_path / 'one'}", *ARGS]) == 0
    assert main([f"data={data}", f"out={tmp_path / 'accum'}", *ARGS, "gradient_accumulation_steps=2"]) == 0
    one, two, accum = (_losses(tmp_path / name) for name in ("one", "two", "accum"))
    assert len(one) == len(two) == len(accum) == 5
    for a, b, c in zip(one, two, accum):
        assert abs(a - b) <= 1e-4 * abs(a) and abs(a - c) <= 1e-4 * abs(a), (one, two, accum)
    # rank 0 saved the whole model, not its slice: the same tensors as one process's, to float rounding
    ref = load_file(str(tmp_path / "one/checkpoints/step-5/trainable.safetensors"))
    for name in ("two", "accum"):
        got = load_file(str(tmp_path / name / "checkpoints/step-5/trainable.safetensors"))
        assert got.keys() == ref.keys()
        for k, v in ref.items():
            assert got[k].shape == v.shape and torch.allclose(got[k], v, rtol=1e-4, atol=1e-6), (name, k)


def test_eight_gpu_configs_load_in_accelerate():
    """The 5B recipe's configs are valid accelerate configs (unknown keys are rejected) and say what
    docs/scaling.md assumes; FSDP wraps the class our transformer's blocks really are."""
    from accelerate.commands.config.config_args import ClusterConfig

    from models.pipeline import wan22_meta_transformer

    fsdp = ClusterConfig.from_yaml_file(str(ROOT / "models/train_configs/fsdp_8gpu.yaml"))
    assert (fsdp.distributed_type.value, fsdp.num_processes, fsdp.mixed_precision) == ("FSDP", 8, "bf16")
    assert fsdp.fsdp_config["fsdp_sharding_strategy"] == "FULL_SHARD" and fsdp.fsdp_config["fsdp_activation_checkpointing"]
    block_cls = type(wan22_meta_transformer().blocks[0]).__name__
    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == block_cls
    zero3 = ClusterConfig.from_yaml_file(str(ROOT / "models/train_configs/zero3_8gpu.yaml"))
    assert (zero3.distributed_type.value, zero3.num_processes, zero3.mixed_precision) == ("DEEPSPEED", 8, "bf16")
    assert zero3.deepspeed_config["zero_stage"] == 3
