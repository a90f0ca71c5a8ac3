"""Apps are found through entry points: core imports none by name, and any package can add one."""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from core import registry

ROOT = Path(__file__).resolve().parents[2]

FAKE_APP = '''
"""Echo: a string in, the same string out (an app from another package)."""
import dataclasses

from core.config import BaseConfig
from core.pipeline import Pipeline as BasePipeline


@dataclasses.dataclass
class Config(BaseConfig):
    shout: bool = False  # answer in capitals


class Pipeline(BasePipeline):
    name = "echo"
    config_class = Config
'''


def test_core_never_imports_apps():
    offenders = []
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "apps" or n.startswith("apps.")]
    assert not offenders


def test_every_app_of_this_package_is_registered():
    apps = registry.apps()
    assert {p.name for p in (ROOT / "apps").iterdir() if (p / "pipeline.py").exists()} == set(apps)
    for name in apps:
        assert apps[name].name == name and apps.module_name(name) == f"apps.{name}"


def test_an_app_from_another_package_is_listed_and_configurable(tmp_path):
    (tmp_path / "echo_app").mkdir()
    (tmp_path / "echo_app" / "__init__.py").write_text(textwrap.dedent(FAKE_APP))
    dist = tmp_path / "echo_app-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-app\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text('[catalogue.apps]\necho = echo_app:Pipeline\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    run = lambda *args: subprocess.run([sys.executable, "-m", "core", *args], capture_output=True,  # noqa: E731
                                       text=True, cwd=ROOT, env=env, timeout=120)
    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    assert "echo                   Echo: a string in, the same string out" in listed.stdout
    assert "image_classification" in listed.stdout
    config = run("config", "echo", "--set", "shout=true", "epochs=2")
    assert config.returncode == 0, config.stderr
    assert any(line.split()[:3] == ["shout", "true", "answer"] for line in config.stdout.splitlines())
    unknown = run("train", "nothing")
    assert unknown.returncode != 0 and "echo" in unknown.stderr
