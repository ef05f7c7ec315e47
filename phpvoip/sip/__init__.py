"""The SIP protocol: bytes in, messages and timer-driven state machines out.

Nothing here knows about modules, the engine or the reactor singleton; time comes in
as an injected `IReactorTime`. `transport` holds the §18 rules; the sockets that
follow them are `phpvoip.transport`'s.
"""
