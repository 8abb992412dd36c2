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
