"""Settings: the generated default file, file overrides, CLI precedence, and collected errors."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from rtseg.cli import build_parser, config_from_args
from rtseg.core.config import (
    SECTION_HELP,
    STREAM_KEYS,
    Config,
    StreamConfig,
    apply_overrides,
    apply_section_overrides,
    config_to_dict,
    excerpt,
    load_config,
    render_default_yaml,
)
from rtseg.core.errors import ConfigError
from rtseg.offline.train_settings import TrainConfig

ROOT = Path(__file__).resolve().parents[3]


def test_default_yaml_is_generated_from_the_code_and_comments_every_setting():
    text = (ROOT / "configs" / "default.yaml").read_text()
    assert text == render_default_yaml(), "regenerate with: python -m rtseg.core.config > configs/default.yaml"
    assert yaml.safe_load(text) == config_to_dict(Config())
    for line in text.splitlines():
        if line.startswith("  "):
            assert "  # " in line, f"setting without a comment: {line}"
        assert len(line) <= 120, f"line over 120 characters: {line}"


def test_every_help_is_one_short_line():
    for section in (*(f.default_factory for f in fields(Config) if f.name in SECTION_HELP), TrainConfig):
        for f in fields(section):
            assert "\n" not in f.metadata["help"] and len(f.metadata["help"]) <= 100, f"{section.__name__}.{f.name}"


def test_file_overrides_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  score_threshold: 0.7\n  classes: [person, car]\noutput:\n  crf: 30\n")
    config = load_config(path)
    assert config.model.score_threshold == 0.7
    assert config.model.classes == ["person", "car"]
    assert config.output.crf == 30
    assert config.model.size == 0  # untouched default (automatic)


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  score_threshold: 0.7\n  size: 640\npipeline:\n  max_frames: 9\n")
    args = build_parser().parse_args(["--source", "x.mp4", "--config", str(path), "--score-threshold", "0.3",
                                      "--classes", "person, car", "--no-show"])
    config = config_from_args(args)
    assert config.model.score_threshold == 0.3  # flag wins
    assert config.model.size == 640  # file wins over default
    assert config.pipeline.max_frames == 9
    assert config.model.classes == ["person", "car"]
    assert config.output.show is False


def test_every_problem_is_reported_at_once_with_its_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  score_threshold: 3\n  size: big\n  colour: red\nrender:\n  alpha: -1\nwhat: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    for fragment in ("model.score_threshold: 3.0 is above the maximum 1.0", "model.size: expected int, got str",
                     "model.colour: unknown key", "render.alpha: -1.0 is below the minimum 0.0", "what: unknown section"):
        assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("text, fragment", [
    ("model: [1, 2\n", "is not valid YAML at line"),
    ("- just\n- a list\n", "expected a mapping of sections"),
    ("model: 3\n", "model: expected a mapping"),
    ("output:\n  show: 'yes'\n", "output.show: expected bool"),
    ("output:\n  preset: warp\n", "output.preset: 'warp' is not one of"),
])
def test_malformed_files_are_clear_errors(tmp_path, text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        load_config(path)
    assert fragment in str(err.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.yaml")


def test_overrides_do_not_mutate_the_original():
    base = Config()
    changed = apply_overrides(base, {"model": {"size": 320}}, "test")
    assert changed.model.size == 320 and base.model.size == 0


def test_a_section_on_its_own_is_checked_by_the_same_rules():
    updated = apply_section_overrides(TrainConfig(), {"lr": 1, "clip_grad": None, "lr_steps": [0.25, 0.5]}, "flags",
                                      str.upper)
    assert updated.lr == 1.0 and isinstance(updated.lr, float)
    assert updated.clip_grad is None and updated.lr_steps == [0.25, 0.5]
    with pytest.raises(ConfigError, match="LR_STEPS: 1.0 is not below 1.0"):  # each item bounded, ints as floats
        apply_section_overrides(TrainConfig(), {"lr_steps": [0.5, 1]}, "flags", str.upper)
    with pytest.raises(ConfigError) as err:
        apply_section_overrides(TrainConfig(), {"lr": 0.0, "momentum": 1, "lr_steps": [0.5, "x"], "hflip": 2,
                                                "colour": 1, "seed": None}, "flags", str.upper)
    message = str(err.value)
    assert message.startswith("flags: ") and "\n" not in message
    for fragment in ("LR: 0.0 is not above 0.0", "MOMENTUM: 1.0 is not below 1.0",
                     "LR_STEPS: expected list of numbers, got list", "HFLIP: 2.0 is above the maximum 1.0",
                     "COLOUR: unknown key", "SEED: expected int, got NoneType None"):
        assert fragment in message


def _number_settings() -> list[tuple[str, str]]:
    """Every float setting of every section, bounded or not (``max_frames`` and friends are ints: always finite)."""
    return [(section.name, f.name) for section in fields(Config) if section.name in SECTION_HELP
            for f in fields(getattr(Config(), section.name)) if f.type == "float"]


@pytest.mark.parametrize("section, key", _number_settings())
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_by_every_number_setting(section, key, value):
    """NaN passes every range check (each comparison with it is False); infinity means no setting's value."""
    with pytest.raises(ConfigError, match=f"{section}.{key}: {value} is not a finite number"):
        apply_overrides(Config(), {section: {key: value}}, "test")


def test_nan_is_refused_in_lists_of_numbers_and_in_a_streams_entry():
    with pytest.raises(ConfigError, match="LR_STEPS: nan is not a finite number"):
        apply_section_overrides(TrainConfig(), {"lr_steps": [0.5, float("nan")]}, "flags", str.upper)
    with pytest.raises(ConfigError, match="live.read_timeout: nan is not a finite number"):
        apply_overrides(Config(), {"streams": [{"source": "rtsp://cam/s", "live": {"read_timeout": float("nan")}}]},
                        "test")


def test_a_bad_value_is_shown_as_an_excerpt_of_at_most_80_characters():
    assert excerpt("short") == "'short'"
    assert len(excerpt("x" * 10_000_000)) <= 80
    nested: list[object] = ["x"] * 9
    for _ in range(8):  # what a YAML alias bomb builds: 9**9 strings, shared
        nested = [nested] * 9
    assert len(excerpt(nested)) <= 80 and excerpt(nested).startswith("[[[")
    with pytest.raises(ConfigError) as error:
        apply_overrides(Config(), {"model": {"classes": nested, "name": "y" * 100_000}, "x" * 10_000: 1}, "test")
    assert len(str(error.value)) < 600


def test_yaml_aliases_may_share_values_but_not_expand_without_bound(tmp_path):
    shared = tmp_path / "shared.yaml"
    shared.write_text("analytics:\n  heatmap_classes: &people [person, bicycle]\nmodel:\n  classes: *people\n")
    assert load_config(shared).model.classes == ["person", "bicycle"]
    names = "abcdefghi"
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(["a: &a [x,x,x,x,x,x,x,x,x]"] + [f"{n}: &{n} [{','.join(['*' + p] * 9)}]"
                                                                for p, n in zip(names, names[1:])])
                    + "\nmodel:\n  classes: *i\n")
    with pytest.raises(ConfigError, match="more than 100000 values once its YAML aliases are expanded"):
        load_config(bomb)
    loop = tmp_path / "loop.yaml"
    loop.write_text("model:\n  classes: &self [person, *self]\n")
    with pytest.raises(ConfigError, match="alias that refers to itself"):
        load_config(loop)
    deep = tmp_path / "deep.yaml"
    deep.write_text("model: {classes: " + "[" * 50_000 + "]" * 50_000 + "}\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(deep)


def test_training_settings_are_not_a_section_of_the_runtime_config():
    # rtseg train reads no config file, so default.yaml does not offer settings that nothing would read
    with pytest.raises(ConfigError, match="train: unknown section"):
        apply_overrides(Config(), {"train": {"lr": 0.1}}, "test")


# -- fuzzing: no input makes the loader raise anything but its own clear error -------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
_known = st.sampled_from(["model", "pipeline", "render", "output", "tracking", "live"])
_keys = st.sampled_from(["size", "score_threshold", "classes", "alpha", "crf", "preset", "enabled", "max_age",
                         "queue_size", "read_timeout", "name", "weights"])
_documents = st.one_of(_values, st.dictionaries(_known, st.one_of(_values, st.dictionaries(_keys, _values, max_size=4)),
                                                max_size=4))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_fuzz_overrides_only_raise_config_errors(document):
    try:
        config = apply_overrides(Config(), document, "fuzz")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz") and "\n" not in str(exc)
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_yaml_text_only_raises_config_errors(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text else path.write_bytes(b"\xff")
    try:
        load_config(path)
    except ConfigError:
        pass


def test_a_streams_entry_takes_exactly_the_fields_stream_config_declares():
    assert list(STREAM_KEYS) == [f.name for f in fields(StreamConfig)]
    assert STREAM_KEYS["live"] is dict and STREAM_KEYS["source"] is str
