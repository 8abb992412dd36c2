"""The Binder pins must stay the same versions as requirements.txt (only torch's local tag may differ)."""

from pathlib import Path

ROOT = Path(__file__).parent.parent


def pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    pairs = [line.split("==") for line in lines if "==" in line]
    return {name.lower(): version.split("+")[0] for name, version in pairs}


def test_binder_pins_match_requirements():
    assert pins(ROOT / "binder" / "requirements.txt") == pins(ROOT / "requirements.txt")


def test_environment_yml_installs_requirements_txt():
    assert "-r requirements.txt" in (ROOT / "environment.yml").read_text()


def test_binder_postbuild_installs_the_toolkit_as_the_colab_cell_does():
    """One `pip install` of the repository, no --no-deps data package: Binder and Colab take the same path."""
    lines = [line.strip() for line in (ROOT / "binder" / "postBuild").read_text().splitlines()]
    installs = [line for line in lines if line.startswith("pip install")]
    assert installs == ["pip install -e ."], installs
    assert not any("requirements-nodeps" in line or "--no-deps" in line for line in lines if not line.startswith("#"))


def test_binder_pins_every_dependency_of_the_toolkit():
    """So that postBuild's install resolves nothing that binder/requirements.txt did not pin."""
    import re

    import tomllib

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in dependencies}
    pinned = {name.replace("_", "-") for name in pins(ROOT / "binder" / "requirements.txt")}
    assert names <= pinned, names - pinned
    assert "animal-mnist" not in names  # its metadata declares TensorFlow: its data come from datafiles
