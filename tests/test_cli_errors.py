"""Every command line takes key=value overrides checked against its dataclass: an unknown key or a bad
value is the same single `error: ...` line on stderr and exit code 2 (envs.config.parse_overrides)."""
from __future__ import annotations

import importlib

import pytest

# (module, argv prefix, an int option): the CLIs that are not Hydra apps (run / eval agent: tests/test_run_cli.py)
CLIS = [
    ("v4s_agent.eval", ["imagination"], "seed"),
    ("v4s_agent.bench", ["sim"], "seed"),
    ("v4s_agent.bench", ["generate"], "seed"),
    ("v4s_agent.bench", ["train"], "seed"),
    ("v4s_agent.bench", ["habitat"], "seed"),
    ("v4s_agent.export_qa", [], "seed"),
    ("models.data", [], "seed"),
    ("models.train", [], "seed"),
    ("models.codec_train", [], "steps"),
    ("models.codec_probe", [], None),  # only string options
    ("models.probe", [], "clips"),
    ("planners.readback.sim_truth", [], "scenes"),
    ("planners.readback.inverse_dynamics", [], "seed"),
]


def _exit_code(module: str, argv: list[str]) -> int:
    main = importlib.import_module(module).main
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("module, prefix, int_key", CLIS, ids=[" ".join([m, *p]) for m, p, _ in CLIS])
def test_unknown_key_and_bad_value_are_one_line(module, prefix, int_key, capsys):
    assert _exit_code(module, [*prefix, "nosuchkey=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown key 'nosuchkey'; valid keys: [") and err.count("\n") == 1, err
    if int_key is None:
        return
    assert _exit_code(module, [*prefix, f"{int_key}=abc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: bad value {int_key}='abc'") and err.count("\n") == 1, err
