"""Exact memory of the registrar's binding table with N live bindings (tracemalloc).

Run: ``.venv/bin/python bench/bindings_memory.py [--bindings N]``

Each binding is built as a REGISTER would build it: its own strings for the AOR,
contact and Call-ID (nothing shared, as with parsed messages; the key is the
contact's string when they agree), a User-Agent from a few shared ones, a source
`Address`; then put in a `BindingTable` on a `Clock` (one heap entry each, one
timer). Reports bytes per binding for the table alone (what the
switch's RSS figure adds the interpreter, the users and the digest replay table
to), and how long lapsing all of them takes.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet.task import Clock

from phpvoip.modules.bindings import BindingTable, contact_key
from phpvoip.sip.address import Address
from phpvoip.sip.uri import parse_uri
from phpvoip.store import Binding


def build(n: int, clock: Clock) -> BindingTable:
    table = BindingTable(clock)
    agents = [f"Phone/{v}.0" for v in range(7)]
    for i in range(n):
        user = str(100000 + i)
        host = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        contact = f"sip:{user}@{host}:5060;transport=udp"
        key = contact_key(parse_uri(contact))
        table.put(
            Binding(
                aor=user,
                key=contact if key == contact else key,  # as the registrar does
                contact=contact,
                expires_at=1000.0 + i % 3600,
                call_id=f"{i:08x}-a41c-4f4e-9a51-3f2b6c1d{i:06d}@{host}",
                cseq=2,
                q=None,
                source=Address("udp", host, 5060 + i % 1000),
                registered_at=float(i),
                user_agent=agents[i % len(agents)],  # shared, as the registrar's cache does
            )
        )
    return table


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bindings", type=int, default=100_000)
    args = parser.parse_args()
    clock = Clock()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    table = build(args.bindings, clock)
    built = time.perf_counter() - started
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    timers = len(clock.getDelayedCalls())
    started = time.perf_counter()
    clock.advance(5000)
    lapsed = time.perf_counter() - started
    print(
        f"binding table: {args.bindings} bindings in {used / 2**20:.1f} MiB"
        f" = {used / args.bindings:.0f} bytes each (built in {built:.2f} s under tracemalloc);"
        f" {timers} timer armed;"
        f" all lapsed in {lapsed:.2f} s, {len(table)} left"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
