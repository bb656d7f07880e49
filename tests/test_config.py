from __future__ import annotations

import json

import pytest

from harness.config import ConfigError, config_hash, load_recipe, resolve, validate_params


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_precedence_defaults_recipe_flags_overrides(tmp_path):
    recipe = load_recipe(write(tmp_path, "model: popularity\nloss: ce\ntrain:\n  lr: 0.5\n  epochs: 3\n"))
    [config] = resolve(recipe, {"model": "linear-context", "train.epochs": 7}, ["train.lr=0.25", "seed=4"])
    assert config["model"] == {"name": "linear-context", "params": {}}
    assert config["train"]["epochs"] == 7  # flag beats recipe
    assert config["train"]["lr"] == 0.25  # --set beats recipe
    assert config["train"]["batch_size"] == 64  # default kept
    assert config["seed"] == 4


def test_unknown_recipe_key_names_file_and_line(tmp_path):
    path = write(tmp_path, "model: popularity\ntrain:\n  epochs: 2\n  learning_rate: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: unknown setting 'train.learning_rate'"):
        load_recipe(path)
    path = write(tmp_path, "dataset: synthetic\nmodle: kbrd\n", "typo.yaml")
    with pytest.raises(ConfigError, match=rf"{path}:2: unknown setting 'modle'"):
        load_recipe(path)


def test_malformed_yaml_reports_file_and_line(tmp_path):
    path = write(tmp_path, "model: popularity\ntrain:\n  epochs: [1, 2\nloss: ce\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: malformed YAML"):
        load_recipe(path)


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "model: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_recipe(path)


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match="unknown setting 'train.nope'"):
        resolve(overrides=["train.nope=1"])
    with pytest.raises(ConfigError, match="expects key=value"):
        resolve(overrides=["train.lr"])


def test_override_values_are_parsed_as_yaml():
    [config] = resolve(overrides=["train.lr=3e-4", "model.params.dim=128", "model.params.names=[a, b]"])
    assert config["train"]["lr"] == pytest.approx(3e-4)
    assert config["model"]["params"] == {"dim": 128, "names": ["a", "b"]}


def test_grid_and_seeds_expand_in_order(tmp_path):
    recipe = load_recipe(write(tmp_path, "seeds: [0, 1]\ngrid:\n  model: [popularity, linear-context]\n"))
    configs = resolve(recipe)
    assert [(c["model"]["name"], c["seed"]) for c in configs] == [
        ("popularity", 0), ("popularity", 1), ("linear-context", 0), ("linear-context", 1)]
    # An explicit --seed overrides the recipe's seed list.
    assert [c["seed"] for c in resolve(recipe, {"seed": 9})] == [9, 9]


def test_type_errors_are_reported():
    with pytest.raises(ConfigError, match="train.epochs must be a positive integer"):
        resolve(overrides=["train.epochs=many"])


def test_params_are_checked_against_the_factory_signature():
    def factory(ctx, dim: int = 8, dropout: float = 0.1):
        return None

    validate_params("model", "m", factory, {"dim": 4}, skip=1)
    with pytest.raises(ConfigError, match="model 'm' has no parameter 'dimension' \\(accepted: dim, dropout\\)"):
        validate_params("model", "m", factory, {"dimension": 4}, skip=1)


def test_config_hash_ignores_seed_and_device_only():
    [a] = resolve(overrides=["seed=1", "device=cpu"])
    [b] = resolve(overrides=["seed=2", "device=auto"])
    [c] = resolve(overrides=["seed=1", "train.lr=0.5"])
    assert config_hash(a) == config_hash(b) != config_hash(c)


# --- component defaults in the stored config and its hash ---------------------------------------

DEFAULT_PLUGIN = '''
from harness.api import hookimpl
from plugins.baselines import PopularityRanker


def build(ctx, decay: float = {decay}):
    return PopularityRanker(ctx)


@hookimpl
def crs_bench_register_models(registry):
    registry.add("decaying", build, "popularity; the default of 'decay' differs between releases")
'''


def test_a_run_stores_its_components_defaults(run_bench, tmp_path):
    from harness.config import component_defaults
    from plugins.models.linear_context import LinearContextRecommender

    code, out, err = run_bench("run", "--model", "linear-context", "--epochs", "1", "--quiet",
                               "--set", "model.params.dim=16")
    assert code == 0, err
    [path] = (tmp_path / "results" / "runs").glob("*/record.json")
    record = json.loads(path.read_text())
    defaults = component_defaults(LinearContextRecommender)
    assert defaults and record["config"]["model"]["params"] == {**defaults, "dim": 16}
    assert record["components"]["model"]["params"] == record["config"]["model"]["params"]
    assert record["config_hash"] == config_hash(record["config"])  # recomputable from what is stored


def test_a_changed_default_is_a_new_run(run_bench, tmp_path):
    ids = []
    for decay in (0.5, 0.9):
        plugin = tmp_path / f"release_{decay}.py"
        plugin.write_text(DEFAULT_PLUGIN.replace("{decay}", str(decay)))
        code, out, err = run_bench("run", "--plugin", str(plugin), "--model", "decaying", "--quiet")
        assert code == 0, err
        ids.append(out.splitlines()[0])
    assert ids[0] != ids[1]
    runs = sorted((tmp_path / "results" / "runs").glob("*/record.json"))
    assert sorted(json.loads(p.read_text())["config"]["model"]["params"]["decay"] for p in runs) == [0.5, 0.9]


def test_dry_run_shows_resolved_params(run_bench):
    code, out, err = run_bench("run", "--dry-run", "--model", "popularity")
    assert code == 0, err
    [config] = json.loads(out)
    assert config["model"]["params"] == {"counts": "dialogues"}  # popularity's one parameter, at its default


def test_schema_2_records_keep_their_hash_unless_defaults_are_filled(tmp_path, plugins):
    from harness.migrations import migrate

    record = {"schema_version": 2, "config_hash": "old", "run_id": "old-id", "extra": {},
              "config": {**resolve()[0]}, "components": {"model": {"name": "linear-context", "params": {}}}}
    kept = migrate(record)
    assert kept["schema_version"] == 3 and kept["config_hash"] == "old" and kept["extra"]["defaults_filled"] is False
    filled = migrate(record, plugins.registries)
    assert filled["config"]["model"]["params"] and filled["config_hash"] == config_hash(filled["config"]) != "old"
    assert filled["extra"]["schema_2"] == {"config_hash": "old", "run_id": "old-id"}
    assert filled["components"]["model"]["params"] == filled["config"]["model"]["params"]
