from __future__ import annotations

import pytest

from harness.plugin_manager import PluginError, load_plugins
from harness.registry import Origin, Registry, RegistryError


def test_unknown_name_suggests_close_matches():
    registry = Registry("models")
    for name in ("popularity", "repeat-context", "kbrd"):
        registry.add(name, lambda ctx: None, "x")
    with pytest.raises(RegistryError) as caught:
        registry.get("populrity")
    assert str(caught.value) == "unknown model 'populrity': did you mean 'popularity'?"
    with pytest.raises(RegistryError, match="registered: kbrd, popularity, repeat-context"):
        registry.get("zzz")


def test_collision_names_both_origins():
    registry = Registry("losses")
    registry._current_origin = Origin("plugins.losses.ce", "builtin", "crs-bench", "0.1.0")
    registry.add("ce", lambda ctx: None, "first")
    registry._current_origin = Origin("other_pkg", "entrypoint", "other-dist", "2.0")
    with pytest.raises(RegistryError) as caught:
        registry.add("ce", lambda ctx: None, "second")
    message = str(caught.value)
    assert "builtin:plugins.losses.ce (crs-bench 0.1.0)" in message
    assert "entrypoint:other_pkg (other-dist 2.0)" in message


def test_builtins_are_registered_with_their_origin(plugins):
    popularity = plugins.registries.models.get("popularity")
    assert popularity.origin.source == "builtin" and popularity.origin.distribution == "crs-bench"
    assert {"synthetic"} <= set(plugins.registries.datasets.names())
    assert {"popularity", "repeat-context", "linear-context"} <= set(plugins.registries.models.names())


def test_plugin_raising_during_registration_is_named(tmp_path):
    path = tmp_path / "broken_plugin.py"
    path.write_text("from harness import hookimpl\n\n@hookimpl\ndef crs_bench_register_models(registry):\n"
                    "    raise ValueError('boom')\n")
    with pytest.raises(PluginError) as caught:
        load_plugins(extra=[str(path)], autoload=False)
    assert str(caught.value).startswith(f"plugin '{path}' raised in crs_bench_register_models: ValueError: boom")


def test_plugin_that_fails_to_import_is_named(tmp_path):
    path = tmp_path / "bad_import.py"
    path.write_text("import this_module_does_not_exist\n")
    with pytest.raises(PluginError, match=f"plugin file '{path}' failed to import: ModuleNotFoundError"):
        load_plugins(extra=[str(path)], autoload=False)


def test_collision_between_plugins_is_reported(tmp_path):
    path = tmp_path / "dup.py"
    path.write_text("from harness import hookimpl\n\n@hookimpl\ndef crs_bench_register_models(registry):\n"
                    "    registry.add('popularity', lambda ctx: None, 'mine')\n")
    with pytest.raises(PluginError, match="model 'popularity' is registered twice: by builtin:plugins.baselines"):
        load_plugins(extra=[str(path)], autoload=False)


def test_module_path_plugins_and_misspelt_hooks(tmp_path, monkeypatch):
    package = tmp_path / "my_crs_plugin.py"
    package.write_text("from harness import hookimpl\n\n@hookimpl\ndef crs_bench_register_modles(registry):\n"
                       "    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="plugin 'my_crs_plugin' .* is invalid"):
        load_plugins(extra=["my_crs_plugin"], autoload=False)


def test_autoload_can_be_disabled(monkeypatch):
    from harness import plugin_manager

    calls = []
    monkeypatch.setattr(plugin_manager.importlib.metadata, "entry_points",
                        lambda group: calls.append(group) or [])
    monkeypatch.setenv(plugin_manager.DISABLE_AUTOLOAD_ENV, "1")
    load_plugins()
    assert calls == []
    monkeypatch.setenv(plugin_manager.DISABLE_AUTOLOAD_ENV, "")
    load_plugins()
    assert calls == ["crs_bench"]
