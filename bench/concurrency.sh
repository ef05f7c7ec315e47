#!/bin/sh
# 10,000 calls held at once through phpvoip (SIPp uac -r 250 -d 40000 -> phpvoip ->
# SIPp uas): peak concurrent calls, retransmissions %, setup p50/p99, peak RSS, CPU
# and GC pauses; exits non-zero unless < 1 % retransmissions, p99 < 200 ms, < 300 MB.
#   bench/concurrency.sh [--calls 15000] [--rate 250] [--hold 40] [--limit 12000] [--keep] [--profile]
# Needs sipp (apt-get install sip-tester) and the project virtualenv (make venv).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" bench/concurrency.py "$@"
