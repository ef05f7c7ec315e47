#!/bin/sh
# Relayed G.711 calls held at once (issue 10): phpvoip's in-process relay and a
# userspace rtpengine on the same load in one run. SIPp uac -> phpvoip -> SIPp uas,
# RTP 50 pps each way on each leg from one generator process; steps up the calls
# until loss >= 1 % or added jitter p99 >= 5 ms; prints loss, jitter p50/p99, the
# CPU of the switch, rtpengine and the generator, RSS; then calls/s with the relay
# on against off (media: direct).
#   bench/media.sh [--steps 100,200,...] [--duration 10] [--rate 200] [--only direct,relay,rtpengine]
#                  [--rates 100,200,...|''] [--ports 61000-65499] [--keep]
# Needs sipp (apt-get install sip-tester), rtpengine (apt-get install rtpengine-daemon)
# and the project virtualenv (make venv).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" bench/media.py "$@"
