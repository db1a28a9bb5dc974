#!/usr/bin/env bash
# Runs the whole citygate test suite. Installs what the tests need when it is missing:
# Debian packages (mosquitto, socat, libxml2-utils, prometheus,
# chromium) with apt-get, Python tools (pymodbus)
# in a venv at .venv, and SUMO (tests/sumo.sh: eclipse-sumo in .venv-sumo, the kit's D1/D2
# scenarios). The SUMO tests fail here rather than skip (CITYGATE_REQUIRE_SUMO=1).
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi; }

missing=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v socat >/dev/null || missing+=(socat)
command -v xmllint >/dev/null || missing+=(libxml2-utils)
# promtool and a Prometheus server for tests/tests/observe.rs
{ [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; } || missing+=(prometheus)
# headless Chromium for the status page's test
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYMODBUS="pymodbus[serial]==3.16.1"
if ! .venv/bin/python -c 'import pymodbus, serial' 2>/dev/null; then
  echo "tests/run.sh: creating .venv with $PYMODBUS"
  python3 -m venv .venv
  .venv/bin/pip install -q "$PYMODBUS"
fi
export CITYGATE_PYTHON="$PWD/.venv/bin/python"

bash tests/sumo.sh
export CITYGATE_REQUIRE_SUMO=1

if [ -x firmware/check-no-std.sh ] || [ -f firmware/check-no-std.sh ]; then
  bash firmware/check-no-std.sh
fi

# No function over 150 lines, no file over 700 lines of non-test code (issue [structure]).
python3 tests/py/size_limits.py --self-test
python3 tests/py/size_limits.py

cargo test --workspace "$@"
