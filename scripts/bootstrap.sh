#!/usr/bin/env bash
# Create .venv with the pinned deps and make sure Debian's slapd/ldap-utils are present.
# Safe to run repeatedly; used by scripts/demo.sh, scripts/test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v slapd >/dev/null 2>&1 && [ ! -x /usr/sbin/slapd ] || ! command -v ldapsearch >/dev/null 2>&1; then
    cmd="echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils"
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing slapd and ldap-utils from Debian" >&2
        bash -c "$cmd" >/dev/null
    else
        echo "bootstrap: slapd/ldap-utils missing; as root run:" >&2
        echo "  $cmd" >&2
        exit 1
    fi
fi

# Samba AD DC (the Active Directory stand-in of tests/peers/samba.py; runs in a netns, bridged
# to 127.0.0.1 by socat). Its tests need root, so only root installs it.
if [ ! -x /usr/sbin/samba ] || [ ! -x /usr/bin/samba-tool ] || ! command -v socat >/dev/null 2>&1 \
    || ! command -v ip >/dev/null 2>&1; then
    cmd="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq samba samba-ad-dc samba-ad-provision socat iproute2"
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing Samba AD DC, socat and iproute2 from Debian" >&2
        bash -c "$cmd" >/dev/null
    else
        echo "bootstrap: Samba AD DC missing (the AD tests will fail); as root run:" >&2
        echo "  $cmd" >&2
    fi
fi

# 389 Directory Server (the second RFC 4533 directory of tests/peers/ds389.py; ns-slapd drops
# to the dirsrv user, so its tests need root), so only root installs it.
if [ ! -x /usr/sbin/ns-slapd ] || [ ! -x /usr/sbin/dscreate ]; then
    cmd="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq 389-ds-base"
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing 389 Directory Server (389-ds-base) from Debian" >&2
        bash -c "$cmd" >/dev/null
    else
        echo "bootstrap: 389-ds-base missing (the 389-ds tests will fail); as root run:" >&2
        echo "  $cmd" >&2
    fi
fi

# Chromium and its driver (Debian's): the status page is tested in a real headless browser
# (tests/e2e/test_status_browser.py); selenium is pointed at /usr/bin/chromedriver, so nothing
# is downloaded at test time.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    cmd="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver"
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing chromium and chromium-driver from Debian" >&2
        bash -c "$cmd" >/dev/null
    else
        echo "bootstrap: chromium/chromium-driver missing (the status page's browser test will fail); as root run:" >&2
        echo "  $cmd" >&2
    fi
fi

# systemd-analyze (Debian's systemd package) verifies the unit files in the test suite.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing systemd (for systemd-analyze verify)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }
    else
        echo "bootstrap: systemd-analyze missing; as root run: apt-get install -y systemd" >&2
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.syncd-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
