#!/bin/sh
# Calls per second through phpvoip and through the sippy B2BUA, in one run:
# SIPp UAC -> B2BUA -> SIPp UAS, stepping the rate up to the highest one with zero
# failed calls; prints calls/s, setup latency p50/p99, CPU and peak memory of each.
#   bench/calls.sh [--rates 100,200,...] [--duration 10] [--only phpvoip,phpvoip+ops,sippy] [--keep] [--profile]
# --profile runs phpvoip under cProfile and prints its top functions per call.
# Needs sipp (apt-get install sip-tester) and the project virtualenv (make venv).
# The sippy B2BUA goes into its own virtualenv, bench/.venv, made here on first use;
# it is never a dependency of phpvoip.
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ ! -x bench/.venv/bin/b2bua ]; then
    python3 -m venv bench/.venv
    bench/.venv/bin/python -m pip install -q sippy
fi
exec "$PY" bench/calls.py "$@"
