#!/bin/sh
# A flood from one source while calls go on: 5,000 OPTIONS/s from 127.0.0.3 for the
# whole run, while SIPp places calls from 127.0.0.1 at 50/s through a trunk (an
# exempt peer). Prints the flood offered and answered, what the switch dropped (its
# metrics), calls ok/failed, the switch's CPU, and whether the flooder is answered
# again once its ban has ended. Exits 1 if a call failed or the ban did not end.
#   bench/flood.sh [--rate 5000] [--duration 30] [--call-rate 50] [--ban 10] [--source 127.0.0.3]
# Needs sipp (apt-get install sip-tester) and the project virtualenv (make venv).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" bench/flood.py run "$@"
