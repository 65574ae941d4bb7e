"""The command-line pieces every command shares: one usage-error line, the same model flags, the same settings."""

from __future__ import annotations

import pytest

from rtseg.cli import build_parser
from rtseg.core.commandline import finite_float, model_overrides, run_command
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


@pytest.mark.parametrize(("parser", "flag"), [
    (build_parser, "--score-threshold"), (build_parser, "--read-timeout"),
    (evaluate._parser, "--score-threshold"), (train._parser, "--lr"), (train._parser, "--lr-steps"),
])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "Infinity", "1e999"])
def test_every_commands_number_flags_refuse_nan_and_infinity(parser, flag, value):
    """Each command's parser is commandline.ArgumentParser, whose float flags are finite_float: nan would pass
    every range check after them (each comparison with it is False)."""
    with pytest.raises(UsageError, match=f"argument {flag}: '{value}' is not a finite number"):
        parser().parse_args([flag, value])
    assert finite_float("0.25") == 0.25 and finite_float("-3") == -3.0
