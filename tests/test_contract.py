"""The contract every registered app keeps. Its export checks (core.testing.AppContract) run in each app's
own test module, on the model that module trained (one export per app, of the weights users export); here:
that no app module leaves them out, the same checks on an untrained smoke model of any registered app
without a test module here (one installed from another package), and the checks of the config alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core import registry
from core.testing import AppContract, export_checked

APPS = sorted(registry.apps())
APP_TESTS = Path(__file__).parent / "apps"
OWN_TESTS = [app for app in APPS if (APP_TESTS / f"test_{app}.py").exists()]
OTHERS = [app for app in APPS if app not in OWN_TESTS]


@pytest.mark.parametrize("app", OWN_TESTS)
def test_every_app_module_runs_the_export_contract(app):
    module = APP_TESTS / f"test_{app}.py"
    tree = ast.parse(module.read_text())
    runs = [node.name for node in tree.body if isinstance(node, ast.ClassDef) and node.name.startswith("Test")
            and any(isinstance(base, ast.Name) and base.id == "AppContract" for base in node.bases)]
    # tests/apps/conftest.py exports the module's `trained` pipeline for it.
    fixtures = [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "trained"]
    assert runs and fixtures, f"{module.name} needs `class TestContract(AppContract)` and a `trained` fixture"


@pytest.mark.parametrize("app", APPS)
def test_config_round_trips_through_json(app):
    config_class = registry.apps()[app].config_class
    for preset in config_class.PRESETS:
        config = config_class.preset(preset)
        assert config_class.from_json(config.to_json()) == config


@pytest.mark.parametrize("app", APPS)
def test_every_config_key_says_what_it_means(app):
    # `catalogue config APP` prints these beside each key.
    docs = registry.apps()[app].config_class.field_docs()
    assert not [key for key, doc in docs.items() if not doc]


if OTHERS:
    @pytest.fixture(scope="module", params=OTHERS)
    def exported(request, tmp_path_factory):
        cls = registry.apps()[request.param]
        root = tmp_path_factory.mktemp(request.param)
        pipeline = cls(cls.config_class.preset("smoke"), workdir=root / "run")
        pipeline.model = pipeline.build_model()  # untrained weights suffice: the contract is about the export
        return export_checked(pipeline, root / "models")

    class TestContractOfAppsWithoutTheirOwnTests(AppContract):
        """The contract on an untrained smoke model of each app that has no test module here."""
