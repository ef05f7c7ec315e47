"""Blind transfer (RFC 3515 REFER, as RFC 5589 §6 describes it): the request that
reaches the transfer target.

When a party of a call asks that the other party talk to someone else, the switch
places that call as if the other party (the transferee) had dialled the target: the
request below goes through the router and the modules' ``callout()`` like any
other, and the bridge re-bridges the transferee to the leg that comes back. The
engine drives it (`Engine.transfer`, and a REFER through `Engine._refer`); this
module holds what is particular to transfers: turning a Refer-To into the request
a module sees.
"""

from __future__ import annotations

from typing import Any

from phpvoip.sip.headers import CSeq, NameAddr
from phpvoip.sip.message import Request
from phpvoip.sip.uri import URI

__all__ = ["target_uri", "transfer_request"]


def target_uri(target: Any, domain: str) -> URI:
    """The SIP URI to route for a transfer target: a Refer-To URI (SIP, SIPS or a
    tel: number, RFC 3966) or a plain number at the switch's domain."""
    if isinstance(target, URI):
        if target.scheme == "tel":
            # tel:+1-212-555-0101 names a number; visual separators do not count.
            number = "".join(ch for ch in (target.host or target.opaque or "") if ch not in "-.()")
            return URI("sip", number, domain)
        uri = target.copy()
        uri.headers = None  # ?Header=value parts of a Refer-To are not the target's
        return uri
    return URI("sip", str(target), domain)


def transfer_request(target: Any, party: NameAddr | None, domain: str, call_id: str,
                     referred_by: str | None = None) -> Request:
    """The INVITE a module's ``callout()`` sees for a transfer: to `target`, from
    `party` (the transferee, as the switch knows it), with Referred-By (RFC 3892)
    when the REFER had one. Its Via, Contact, Call-ID and CSeq are the new leg's."""
    uri = target_uri(target, domain)
    request = Request("INVITE", uri)
    user = party.uri.user if party is not None and party.uri.is_sip else None
    display = party.display if party is not None else None
    request.add("From", NameAddr(URI("sip", user or "anonymous", domain), display))
    request.add("To", NameAddr(uri.copy()))
    request.add("Call-ID", call_id)
    request.add("CSeq", CSeq(1, "INVITE"))
    if referred_by:
        request.add("Referred-By", referred_by)
    return request
