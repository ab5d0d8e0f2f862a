"""The systemd unit: `systemd-analyze verify` must be silent, and the directives must be there.

How the verify check works, and why: `systemd-analyze verify` parses every directive (unknown
keys, unparsable values, bad section names) and checks that the ExecStart binary exists and is
executable. It reports parse problems as warnings but still exits 0, so the test fails on ANY
output, not only on the exit status (``test_verify_reports_problems`` proves it would).

The real unit points at /opt/bastion/.venv/bin/python, which does not exist on a build machine,
and ``--root=`` does not redirect that check (systemd 252). So the unit is copied to a temp dir
with exactly two lines rewritten, ExecStart (to this interpreter) and WorkingDirectory (to the
temp dir); the test asserts nothing else changed, and ``test_exec_paths`` checks the original
values of those two lines. ``User=bastion`` is kept as is: verify does not resolve users (it is
silent on this machine, where no such user exists). Should a future systemd warn about it, this
test fails rather than hiding it, and creating the user in the test is the honest fix.

A missing `systemd-analyze` FAILS the test: .ci/run installs the systemd package.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import run

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "bastion.service"


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing; install the systemd package (.ci/run does)")
    return path


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections to (key, value) lists, in order; repeated keys kept (Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def one(section: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in section if k == key]
    assert len(values) == 1, f"{key}= appears {len(values)} times"
    return values[0]


def checkable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart and WorkingDirectory pointing at paths that exist here."""
    original = UNIT.read_text() if text is None else text
    (tmp_path / "run.py").write_text("")
    rewritten = re.sub(
        r"^ExecStart=.*$",
        f"ExecStart={sys.executable} {tmp_path}/run.py live --config {tmp_path}/config.yaml",
        original,
        count=1,
        flags=re.MULTILINE,
    )
    rewritten = re.sub(
        r"^WorkingDirectory=.*$",
        f"WorkingDirectory={tmp_path}",
        rewritten,
        count=1,
        flags=re.MULTILINE,
    )
    changed = [
        (a, b) for a, b in zip(original.splitlines(), rewritten.splitlines(), strict=True) if a != b
    ]
    assert [a.split("=", 1)[0] for a, _ in changed] == ["WorkingDirectory", "ExecStart"]
    unit = tmp_path / "bastion.service"
    unit.write_text(rewritten)
    return unit


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    # --man=no: the unit documents itself with a file: URL; no man page lookups needed.
    return subprocess.run(
        [analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_verify_is_silent(tmp_path: Path) -> None:
    result = verify(checkable_copy(tmp_path))
    output = (result.stdout + result.stderr).strip()
    assert output == "", f"systemd-analyze verify reported:\n{output}"
    assert result.returncode == 0


def test_verify_reports_problems(tmp_path: Path) -> None:
    """The check above can fail here: typos and bad values do produce output."""
    broken = (
        UNIT.read_text()
        .replace("ProtectHome=yes", "ProtectHomee=yes")
        .replace("WatchdogSec=30", "WatchdogSec=thirty")
    )
    result = verify(checkable_copy(tmp_path, broken))
    output = result.stdout + result.stderr
    assert "ProtectHomee" in output
    assert "thirty" in output


def test_security_exposure_stays_low(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the unit 1.7 today; fail if hardening erodes past 2.5."""
    result = subprocess.run(
        [
            analyze(),
            "security",
            "--offline=yes",
            "--threshold=25",
            "--no-pager",
            str(checkable_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_exec_paths() -> None:
    service = parse_unit(UNIT.read_text())["Service"]
    assert one(service, "ExecStart") == (
        "/opt/bastion/.venv/bin/python /opt/bastion/run.py live --config /etc/bastion/config.yaml"
    )
    assert one(service, "WorkingDirectory") == "/opt/bastion"
    assert one(service, "User") == "bastion"
    assert one(service, "Group") == "bastion"
    assert one(service, "EnvironmentFile") == "/etc/bastion/secrets.env"


def test_notify_restart_and_exit_codes() -> None:
    sections = parse_unit(UNIT.read_text())
    service = sections["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "WatchdogSec") == "30"
    assert one(service, "Restart") == "on-failure"
    assert one(service, "RestartSec") == "5"
    assert one(service, "TimeoutStopSec") == "30"
    assert one(sections["Unit"], "StartLimitIntervalSec")
    assert int(one(sections["Unit"], "StartLimitBurst")) >= 1
    prevent = {int(code) for code in one(service, "RestartPreventExitStatus").split()}
    assert prevent == {2, 3, 4}
    # Tied to the code: bad configuration and unsafe-to-start must never be restarted.
    assert {run.EXIT_CONFIG, run.EXIT_UNSAFE} <= prevent
    assert getattr(run, "EXIT_KILL_SWITCH", 4) == 4
    assert run.EXIT_ERROR not in prevent


def test_directories_and_environment() -> None:
    service = parse_unit(UNIT.read_text())["Service"]
    assert one(service, "StateDirectory") == "bastion"
    assert one(service, "LogsDirectory") == "bastion"
    env = dict(v.split("=", 1) for k, v in service if k == "Environment")
    assert env["BASTION_DATA_DIR"] == "/var/lib/bastion"
    assert env["BASTION_LOG_DIR"] == "/var/log/bastion"
    # secrets come only from the EnvironmentFile
    assert not [name for name in env if re.search("KEY|SECRET|TOKEN|PASSWORD", name)]


def test_hardening() -> None:
    service = parse_unit(UNIT.read_text())["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
    }
    for key, value in expected.items():
        assert one(service, key) == value, key
