#!/usr/bin/env bash
# Install (or upgrade) Bastion as the systemd service `bastion`. Idempotent: run it again after
# `git pull` to upgrade; existing configuration and secrets are never overwritten.
#
#   sudo systemd/install.sh [--dry-run] [--source DIR]
#
# The code is COPIED from the checkout (default: the one holding this script) to /opt/bastion,
# owned by root and read-only for the service user, so the running bot cannot modify its own
# code and a half-edited checkout never goes live by accident. If the checkout already is
# /opt/bastion, nothing is copied. The service is installed but not enabled or started: fill in
# /etc/bastion/secrets.env first (see systemd/README.md).
#
# --dry-run prints every step and command without changing anything (no root needed).
set -euo pipefail

PREFIX=/opt/bastion
ETC=/etc/bastion
UNIT_DIR=/etc/systemd/system
SERVICE_USER=bastion
# A system-wide interpreter: ProtectHome=yes hides /root and /home (pyenv, conda) from the service.
PYTHON=${PYTHON:-/usr/bin/python3}

DRY_RUN=0
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

while [ "$#" -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --source) SOURCE="$(cd "${2:?--source needs a directory}" && pwd)"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

STEP=0
step() { STEP=$((STEP + 1)); echo "[$STEP] $*"; }
# run CMD...: execute, or only print it under --dry-run
run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '    would run:'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}
note() { echo "    $*"; }

if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: must run as root (or use --dry-run)" >&2
    exit 1
fi
for f in run.py pyproject.toml config.example.yaml systemd/bastion.service; do
    if [ ! -f "$SOURCE/$f" ]; then
        echo "install.sh: $SOURCE does not look like a Bastion checkout (no $f)" >&2
        exit 1
    fi
done
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "install.sh: $PYTHON 3.11+ is required (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
# hidden_from_service DIR: true when ProtectHome=yes (or home permissions) would hide DIR
hidden_from_service() {
    case "$1" in /root|/root/*|/home|/home/*|/run/user|/run/user/*) return 0 ;; esac
    return 1
}
PYTHON_BASE="$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.base_prefix))')"
if hidden_from_service "$PYTHON_BASE"; then
    echo "install.sh: $PYTHON lives in $PYTHON_BASE, which the service cannot see" \
        "(ProtectHome=yes); use a system-wide Python 3.11+, e.g. PYTHON=/usr/bin/python3.11" >&2
    exit 1
fi
[ "$DRY_RUN" -eq 1 ] && echo "dry run: nothing will be changed"

step "service user and group: $SERVICE_USER"
if getent group "$SERVICE_USER" >/dev/null; then
    note "group $SERVICE_USER exists"
else
    run groupadd --system "$SERVICE_USER"
fi
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    note "user $SERVICE_USER exists"
else
    run useradd --system --gid "$SERVICE_USER" --home-dir /var/lib/bastion --no-create-home \
        --shell /usr/sbin/nologin --comment "Bastion trading bot" "$SERVICE_USER"
fi

step "code: $SOURCE -> $PREFIX (root-owned, read-only for $SERVICE_USER)"
if [ "$SOURCE" = "$PREFIX" ]; then
    note "the checkout is $PREFIX; nothing to copy"
else
    run install -d -m 0755 -o root -g root "$PREFIX"
    # top-level only (a package may have its own data/ folder), and caches anywhere
    top=(.git .venv data logs build .pytest_cache .ruff_cache .mypy_cache .hypothesis)
    anywhere=(__pycache__ '*.egg-info')
    if command -v rsync >/dev/null 2>&1; then
        excludes=("${top[@]/#/--exclude=/}" "${anywhere[@]/#/--exclude=}")
        run rsync -a --delete --chown=root:root --chmod=D755,F644 "${excludes[@]}" \
            "$SOURCE/" "$PREFIX/"
    else
        note "rsync not found: copying with tar (files removed upstream are not deleted)"
        excludes=("${top[@]/#/--exclude=./}" "${anywhere[@]/#/--exclude=}")
        if [ "$DRY_RUN" -eq 1 ]; then
            note "would run: tar -C $SOURCE ${excludes[*]} -cf - . | tar -C $PREFIX -xf -"
        else
            tar -C "$SOURCE" "${excludes[@]}" -cf - . | tar -C "$PREFIX" --no-same-owner -xf -
            chown -R root:root "$PREFIX"
            chmod -R u=rwX,go=rX "$PREFIX"
        fi
    fi
fi

step "virtualenv: $PREFIX/.venv"
if [ -x "$PREFIX/.venv/bin/python" ]; then
    venv_home="$(sed -n 's/^home = //p' "$PREFIX/.venv/pyvenv.cfg" 2>/dev/null || true)"
    if hidden_from_service "$(realpath -m "${venv_home:-/}")"; then
        echo "install.sh: $PREFIX/.venv was made from a Python in $venv_home, which the" \
            "service cannot see; remove $PREFIX/.venv and run again" >&2
        exit 1
    fi
    note "virtualenv exists; updating its packages"
else
    run "$PYTHON" -m venv "$PREFIX/.venv"
fi
run "$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade pip
run "$PREFIX/.venv/bin/python" -m pip install --quiet "$PREFIX"
# the service user must be able to run it (catches unreadable interpreters and broken installs)
if [ "$DRY_RUN" -eq 1 ]; then
    note "would check: runuser -u $SERVICE_USER -- $PREFIX/.venv/bin/python $PREFIX/run.py --help"
elif ! (cd "$PREFIX" && runuser -u "$SERVICE_USER" -- "$PREFIX/.venv/bin/python" run.py --help \
        >/dev/null); then
    echo "install.sh: $SERVICE_USER cannot run $PREFIX/.venv/bin/python $PREFIX/run.py" >&2
    exit 1
fi

step "configuration: $ETC (config.yaml from config.example.yaml, secrets.env template)"
run install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
if [ -e "$ETC/config.yaml" ]; then
    note "$ETC/config.yaml exists; left unchanged"
else
    run install -m 0640 -o root -g "$SERVICE_USER" "$SOURCE/config.example.yaml" "$ETC/config.yaml"
fi
if [ -e "$ETC/secrets.env" ]; then
    note "$ETC/secrets.env exists; left unchanged"
else
    # root:root 0600: systemd reads it before dropping privileges; the bot user cannot.
    if [ "$DRY_RUN" -eq 1 ]; then
        note "would write $ETC/secrets.env (root:root 0600) with empty BASTION_EXCHANGE__API_KEY,"
        note "BASTION_EXCHANGE__API_SECRET and BASTION_TELEGRAM__TOKEN"
    else
        (
            umask 077
            cat >"$ETC/secrets.env" <<'EOF'
# Bastion secrets (systemd EnvironmentFile). Mode 0600, owner root. Never put these in
# config.yaml. Leave a value empty to run without it (no trading keys = market data only).
BASTION_EXCHANGE__API_KEY=
BASTION_EXCHANGE__API_SECRET=
BASTION_TELEGRAM__TOKEN=
EOF
        )
        chown root:root "$ETC/secrets.env"
        chmod 0600 "$ETC/secrets.env"
    fi
fi

step "systemd unit: $UNIT_DIR/bastion.service"
run install -m 0644 -o root -g root "$SOURCE/systemd/bastion.service" "$UNIT_DIR/bastion.service"
if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
else
    note "systemd is not running here; skipped systemctl daemon-reload"
fi

step "done; next steps"
note "1. edit $ETC/secrets.env and $ETC/config.yaml"
note "2. sudo -u $SERVICE_USER $PREFIX/.venv/bin/python $PREFIX/run.py check-config --config $ETC/config.yaml"
note "3. sudo systemctl enable --now bastion && journalctl -u bastion -f"
note "after an upgrade: sudo systemctl restart bastion"
