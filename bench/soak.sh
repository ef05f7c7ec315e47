#!/bin/sh
# Soak: calls (SIPp, 20/s held 5 s) and digest registrations (20/s) through phpvoip
# for --minutes (10 by default), sampling RSS, descriptors, calls, legs, dialogs,
# transactions and GC objects every 5 s; then checks every one is back to idle.
#   bench/soak.sh [--minutes 10] [--call-rate 20] [--hold 5] [--reg-rate 20] [--users 1000]
#                 [--sample 5] [--settle 40] [--t1 0.5] [--keep]
# Needs sipp (apt-get install sip-tester) and the project virtualenv (make venv).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" bench/soak.py "$@"
