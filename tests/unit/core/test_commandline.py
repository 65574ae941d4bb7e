"""The command-line pieces every command shares: one usage-error line, the same model flags, the same settings."""

from __future__ import annotations

import pytest

from rtseg.cli import build_parser
from rtseg.core.commandline import model_overrides, run_command
from rtseg.core.errors import UsageError
from rtseg.offline import evaluate, train
from rtseg.web.serve import build_parser as build_serve_parser


@pytest.mark.parametrize(("main", "argv", "names"), [
    (train.main, ["--bogus"], "--bogus"),
    (evaluate.main, ["--data", "x"], "--images, --weights"),
])
def test_a_subcommand_run_on_its_own_prints_a_usage_error_as_one_line_and_exits_2(main, argv, names, capsys):
    assert run_command(main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtseg: error: ") and err.count("\n") == 1 and names in err


def test_rtseg_and_rtseg_serve_read_the_model_flags_into_the_same_settings():
    flags = ["--weights", "none", "--size", "64", "--precision", "fp32", "--model", "maskrcnn_v2", "--device", "cpu"]
    main = model_overrides(build_parser().parse_args(flags))
    page = model_overrides(build_serve_parser().parse_args(flags))
    assert main == page == {"weights": "none", "size": 64, "precision": "fp32", "name": "maskrcnn_v2", "device": "cpu"}
    with pytest.raises(UsageError, match="invalid choice: 'fp8'"):
        build_serve_parser().parse_args(["--precision", "fp8"])
