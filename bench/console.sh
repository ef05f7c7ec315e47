#!/bin/sh
# Does a browser on the web console slow calls? bench/calls.sh's rate search run twice
# in one run, without and then with a headless chromium logged in on the dashboard and
# /calls (Server-Sent Events streaming); prints calls/s of each and their ratio.
#   bench/console.sh [--rates 100,150,...] [--duration 10] [--pause 3] [--keep]
# Needs sipp (sip-tester), chromium and chromium-driver (make peers) and the project
# virtualenv with the test extras (selenium): make venv.
set -e
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" bench/console.py "$@"
