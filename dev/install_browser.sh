#!/usr/bin/env bash
# Install Debian's Chromium and its ChromeDriver for the event debugger's browser test
# (tests/integration/test_debugger_page.py drives /usr/bin/chromium through
# /usr/bin/chromedriver with selenium).
#
# Debian packages only: a test tool's own browser download cannot be used on CI machines.
# Idempotent: does nothing when both binaries are already there. Needs root (or sudo) and
# apt-get; prints what it found. Exits non-zero when the install fails.
#
# Usage: bash dev/install_browser.sh          (from any cwd)
set -euo pipefail

log() { printf 'install_browser: %s\n' "$*" >&2; }

have_browser() {
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]
}

if have_browser; then
    log "chromium and chromedriver already installed"
else
    if ! command -v apt-get >/dev/null 2>&1; then
        log "error: apt-get not found; install chromium and chromium-driver with the system's package manager"
        exit 1
    fi
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo -n)
        else
            log "error: not root and no sudo; cannot install chromium"
            exit 1
        fi
    fi
    log "installing chromium and chromium-driver with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    if ! have_browser; then
        log "error: apt-get finished but /usr/bin/chromium or /usr/bin/chromedriver is missing"
        exit 1
    fi
fi

/usr/bin/chromium --version 2>/dev/null | sed 's/^/install_browser: /' >&2 || true
/usr/bin/chromedriver --version 2>/dev/null | sed 's/^/install_browser: /' >&2 || true
