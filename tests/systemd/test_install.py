"""systemd/install.sh: syntax, and a dry run that names every step and changes nothing."""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "systemd" / "install.sh"


def bash() -> str:
    path = shutil.which("bash")
    assert path is not None
    return path


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bash(), str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    )


def test_syntax() -> None:
    result = subprocess.run(
        [bash(), "-n", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_dry_run_names_the_steps_and_changes_nothing() -> None:
    watched = [
        Path("/etc/bastion"),
        Path("/opt/bastion"),
        Path("/etc/systemd/system/bastion.service"),
    ]
    before = {p: p.exists() for p in watched}
    result = run_script("--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "dry run: nothing will be changed" in out
    for step in (
        "service user and group: bastion",
        "code: ",
        "virtualenv: /opt/bastion/.venv",
        "configuration: /etc/bastion",
        "systemd unit: /etc/systemd/system/bastion.service",
    ):
        assert step in out, step
    # the steps are numbered in order
    numbers = [line.split("]")[0] for line in out.splitlines() if line.startswith("[")]
    assert numbers == [f"[{i}" for i in range(1, len(numbers) + 1)]
    if not before[Path("/etc/bastion")]:
        assert "BASTION_EXCHANGE__API_KEY" in out
        assert "0600" in out
    assert {p: p.exists() for p in watched} == before


def test_secrets_template_names() -> None:
    text = SCRIPT.read_text()
    for name in (
        "BASTION_EXCHANGE__API_KEY=",
        "BASTION_EXCHANGE__API_SECRET=",
        "BASTION_TELEGRAM__TOKEN=",
    ):
        assert f"\n{name}\n" in text, name  # present, with an empty value


def test_bad_usage(tmp_path: Path) -> None:
    assert run_script("--bogus").returncode == 2
    result = run_script("--dry-run", "--source", str(tmp_path))
    assert result.returncode == 1
    assert "does not look like a Bastion checkout" in result.stderr
