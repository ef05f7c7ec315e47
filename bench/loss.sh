#!/bin/sh
# SIPp calls through the real switch over a link losing 20 % of the datagrams in
# each direction (nftables in a network namespace made for the run; see
# bench/loss.py). Prints one JSON line: calls completed and failed, the failures'
# SIP answers, the loss measured on the link, and the switch's state afterwards.
#   bench/loss.sh [--calls 2000] [--rate 20] [--loss 20] [--t1 0.5]
# Needs root, iproute2, nftables and sipp (make peers), and the virtualenv (make venv).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" bench/loss.py "$@"
