#!/bin/sh
# Registrations per second with full digest auth (SIPp), and the switch's memory
# with that many live bindings; then the exact size of the binding table alone.
#   bench/register.sh [--users N] [--concurrency C | --rate R] [--store sqlite|memory] [--no-kamailio]
# Kamailio's registrar (tests/interop/kamailio/upstream.cfg) takes the same SIPp load in the
# same run, for the figure beside ours (apt-get install kamailio; skipped when missing).
# Needs sipp (apt-get install sip-tester) and the virtualenv (make venv).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" bench/register_bench.py "$@"
"$PY" bench/bindings_memory.py
