"""Configuration faults: each ends in one line naming the file and line (recipe) or the setting (--set,
flag), printed by the CLI as `bench: error: ...` with exit 2, before the first run of a recipe starts."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import ConfigError, check_select_metric, load_recipe, resolve, validate_params


def recipe(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(run_bench, *args: str) -> str:
    """The single error line of a `bench run --dry-run` that must fail with exit 2."""
    code, out, err = run_bench("run", "--dry-run", *args)
    assert code == 2, (out, err)
    assert out == "" and len(err.strip().splitlines()) == 1, err
    return err.strip()


def recipe_error(run_bench, tmp_path: Path, text: str) -> str:
    """The error line of a dry run of a recipe with `text`, with its path replaced by FILE."""
    path = recipe(tmp_path, text)
    return error_of(run_bench, str(path)).replace(str(path), "FILE")


def test_nan_learning_rate_in_recipe(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "model: popularity\ntrain:\n  lr: .nan\n") == (
        "bench: error: FILE:3: train.lr must be a finite positive number, got nan")


def test_infinite_learning_rate_from_set(run_bench):
    assert error_of(run_bench, "--set", "train.lr=1e999") == (
        "bench: error: --set: train.lr must be a finite positive number, got inf")


@pytest.mark.parametrize("value", ["0", "-0.1"])
def test_learning_rate_must_be_positive(run_bench, value):
    assert error_of(run_bench, "--set", f"train.lr={value}").startswith(
        "bench: error: --set: train.lr must be a finite positive number, got ")


def test_train_section_must_be_a_mapping(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "model: popularity\ntrain: 5\n") == (
        "bench: error: FILE:2: 'train' must be a mapping of settings, got 5")


def test_tier_threshold_must_be_an_integer(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, 'tiers:\n  head_min: "six"\n') == (
        "bench: error: FILE:2: tiers.head_min must be a non-negative integer, got 'six'")


def test_tier_thresholds_must_leave_a_body_tier(run_bench):
    # popularity.TierThresholds: head = pop >= head_min, tail = pop <= tail_max, head_min > tail_max + 1.
    assert error_of(run_bench, "--set", "tiers.head_min=1") == (
        "bench: error: --set: tiers.head_min must be greater than tiers.tail_max + 1 = 2 "
        "(the body tier, tail_max < popularity < head_min, must not be empty), got 1")
    assert "tiers.head_min must be greater than tiers.tail_max + 1 = 2" in error_of(
        run_bench, "--set", "tiers.head_min=2")
    [config] = resolve(overrides=["tiers.head_min=3"])  # the smallest valid head_min over tail_max=1
    assert config["tiers"] == {"head_min": 3, "tail_max": 1}


def test_bool_is_not_an_integer(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "train:\n  epochs: true\n") == (
        "bench: error: FILE:2: train.epochs must be a positive integer or 0, got True")


def test_warmup_ratio_is_a_fraction(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "train:\n  warmup_ratio: 5\n") == (
        "bench: error: FILE:2: train.warmup_ratio must be a number in [0, 1], got 5")


def test_seeds_must_not_be_empty(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "model: popularity\nseeds: []\n") == (
        "bench: error: FILE:2: seeds must be a non-empty list of integers, got []")


def test_seeds_must_be_unique(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "model: popularity\nseeds:\n  - 0\n  - 0\n") == (
        "bench: error: FILE:4: seeds[1] repeats seed 0 (seeds must be unique)")


def test_duplicate_yaml_keys_are_rejected(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "model: popularity\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n") == (
        "bench: error: FILE:5: duplicate key 'lr' (first on line 3)")
    assert recipe_error(run_bench, tmp_path, "model: popularity\nloss: ce\nmodel: kbrd\n") == (
        "bench: error: FILE:3: duplicate key 'model' (first on line 1)")


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    path = recipe(tmp_path, "train: &base {lr: 0.1, epochs: 2}\ntiers:\n  <<: {head_min: 9}\n  head_min: 7\n")
    [config] = resolve(load_recipe(path))
    assert config["tiers"]["head_min"] == 7


def test_empty_recipe(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "# only a comment\n") == (
        "bench: error: FILE: recipe is empty")


def test_unknown_metric_param(tmp_path):
    path = recipe(tmp_path, "metric_params:\n  pwp_beta: 0.5\n  pwp_bta: 1\n")
    with pytest.raises(ConfigError) as caught:
        resolve(load_recipe(path), metric_param_names={"pwp_beta"})
    assert str(caught.value) == f"{path}:3: unknown setting 'metric_params.pwp_bta' (did you mean 'pwp_beta'?)"
    with pytest.raises(ConfigError, match=r"^--set: unknown setting 'metric_params.k' \(known: pwp_beta\)$"):
        resolve(overrides=["metric_params.k=3"], metric_param_names={"pwp_beta"})
    assert resolve(load_recipe(path))  # without declared names (not wired yet) nothing is checked


def test_select_metric_must_be_produced(tmp_path):
    produced = {"recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10"}
    [config] = resolve(overrides=["train.select_metric=recall@11"])
    with pytest.raises(ConfigError) as caught:
        check_select_metric(config, produced)
    assert str(caught.value) == ("train.select_metric 'recall@11' is not a metric the selected metric families "
                                 "produce (did you mean 'recall@1', 'recall@10', 'recall@50'?)")
    path = recipe(tmp_path, "train:\n  select_metric: recall@11\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: train.select_metric 'recall@11' is not a metric"):
        resolve(load_recipe(path), produced_keys=lambda config: produced)
    check_select_metric(resolve()[0], produced)  # the default recall@10 passes


def test_every_grid_entry_is_checked_before_any_run(run_bench, tmp_path):
    path = recipe(tmp_path, "model: popularity\ndataset:\n  name: synthetic\n  params: {num_items: 40}\n"
                            "grid:\n  train.lr:\n    - 0.1\n    - 0.01\n    - abc\n")
    code, out, err = run_bench("run", "--quiet", str(path), results=tmp_path / "results")
    assert code == 2
    assert err.strip() == f"bench: error: {path}:9: grid.train.lr[2] must be a finite positive number, got 'abc'"
    assert not (tmp_path / "results" / "runs").exists()  # the valid entries before it did not run


def test_grid_entry_with_bad_component_names_the_entry(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "grid:\n  model: [popularity, {name: kbrd, params: 5}]\n") == (
        "bench: error: FILE:2: grid.model[1]: model.params must be a mapping, got 5")


def test_grid_values_must_be_distinct(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "grid:\n  train.lr: [0.1, 0.1]\n") == (
        "bench: error: FILE:2: grid.train.lr[1] repeats 0.1 (grid values must be distinct)")


def test_flag_errors_name_the_flag(run_bench):
    assert error_of(run_bench, "--epochs", "-1") == (
        "bench: error: --epochs: train.epochs must be a positive integer or 0, got -1")


def test_set_under_a_plain_setting(run_bench):
    assert error_of(run_bench, "--set", "seed.x=1") == (
        "bench: error: --set: unknown setting 'seed.x' ('seed' has no sub-settings)")


TYPED_PLUGIN = '''from __future__ import annotations

from typing import Optional

from harness import hookimpl


class Typed:
    trainable = False

    def __init__(self, ctx, decay: float = 0.1, layers: int = 1, name: Optional[str] = None,
                 sizes: tuple[int, ...] = (1,), flag: bool = False, extra: SomethingUnknown = None):
        raise AssertionError("never built: the params fail validation first")


@hookimpl
def crs_bench_register_models(registry):
    registry.add("typed", Typed, "A model with annotated params (test only).")
'''


def test_param_annotations_are_checked_through_the_cli(run_bench, tmp_path):
    plugin = recipe(tmp_path, TYPED_PLUGIN, "typed_plugin.py")
    code, out, err = run_bench("run", "--plugin", str(plugin), "--model", "typed", "--quiet",
                               "--set", "model.params.decay=abc")
    assert code == 2
    assert err.strip() == "bench: error: model 'typed' parameter 'decay' expects float, got 'abc'"


def factory(ctx, decay: float = 0.1, layers: int = 1, name: "str | None" = None,
            sizes: tuple[int, ...] = (1,), pair: "tuple[int, str]" = (1, "a"), flag: bool = False,
            anything=None, extra: "NotImportable" = None):  # noqa: F821
    return None


@pytest.mark.parametrize(("params", "message"), [
    ({"decay": "abc"}, "model 'm' parameter 'decay' expects float, got 'abc'"),
    ({"decay": True}, "model 'm' parameter 'decay' expects float, got True"),
    ({"layers": True}, "model 'm' parameter 'layers' expects int, got True"),
    ({"layers": 1.5}, "model 'm' parameter 'layers' expects int, got 1.5"),
    ({"flag": 1}, "model 'm' parameter 'flag' expects bool, got 1"),
    ({"name": 3}, "model 'm' parameter 'name' expects str or None, got 3"),
    ({"sizes": [1, "x"]}, "model 'm' parameter 'sizes' expects tuple[int, ...], got [1, 'x']"),
    ({"pair": [1, 2]}, "model 'm' parameter 'pair' expects tuple[int, str], got [1, 2]"),
    ({"decay": "1e-3"}, "model 'm' parameter 'decay' expects float, got '1e-3' "
                        "(YAML reads 1e-3 as text: write it with a dot, e.g. 1.0e-03)"),
])
def test_param_annotations_reject(params, message):
    with pytest.raises(ConfigError) as caught:
        validate_params("model", "m", factory, params, skip=1)
    assert str(caught.value) == message


def test_param_annotations_accept():
    validate_params("model", "m", factory, {"decay": 2, "layers": 3, "name": None, "sizes": [1, 2],
                                            "pair": [1, "b"], "flag": True, "anything": object(),
                                            "extra": "unchecked"}, skip=1)


def test_recursive_yaml_anchor_is_an_error_not_a_hang(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "model: &x [*x]\n") == (
        "bench: error: FILE:1: 'model' must be a name or a mapping with 'name' and 'params'")


def test_empty_section_is_not_a_mapping(run_bench, tmp_path):
    assert recipe_error(run_bench, tmp_path, "model: popularity\ntiers:\n") == (
        "bench: error: FILE:2: 'tiers' must be a mapping of settings, got None")
