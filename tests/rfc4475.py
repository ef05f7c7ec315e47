"""What RFC 4475 (SIP torture test messages) expects of each of its 49 messages.

A plain table, shared by the parser test (tests/unit/test_rfc4475_parse.py) and the
over-the-wire tests that send the same files to a running switch. The messages
themselves are read from /work/shared/rfc4475 (`folder()`), never copied here.

Per message:
- `valid`: True when `phpvoip.sip.message.parse` must return a message, False when
  it must raise ParseError. The RFC's own classification: §3.1.1 valid, §3.1.2
  invalid, §3.2 and §3.3 syntactically valid unless the RFC says the message is
  malformed or must get 400 (insuf, multi01, mcl01), §3.4 valid.
- `answer`: what the RFC says a receiving element answers: a status code, "drop"
  (send nothing: responses, and what the RFC says to discard), or None (no
  particular answer; the request is processed like any other, so anything but a
  400 or a drop).
- `also`: other answers the RFC allows ("A 400 Bad Request is also acceptable").
- `parse_status`: for invalid requests, the `ParseError.status` our parser gives
  (the code the transport answers with); None for valid messages and for invalid
  responses (a response is never answered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CASES", "EXPECTED", "INVALID", "VALID", "Case", "folder"]

DROP = "drop"


@dataclass(frozen=True)
class Case:
    name: str
    section: str
    title: str
    valid: bool
    answer: int | str | None
    note: str
    also: frozenset[int | str | None] = field(default_factory=frozenset)
    parse_status: int | None = None


_CASES = [
    # §3.1.1 Valid messages: parsers must accept them
    Case("wsinv", "3.1.1.1", "A Short Tortuous INVITE", True, None,
         "folding, LWS around ':' ';' '=' '/', compact forms, unknown headers and parameters"),
    Case("intmeth", "3.1.1.2", "Wide Range of Valid Characters", True, 501,
         "unknown method of odd token characters: an endpoint answers 501 (a proxy 404 or forwards)",
         frozenset({404})),
    Case("esc01", "3.1.1.3", "Valid Use of the % Escaping Mechanism", True, None,
         "escapes in Request-URI, To, From, Contact; %41 is not recursively unescaped"),
    Case("escnull", "3.1.1.4", "Escaped Nulls in URIs", True, None,
         "REGISTER whose user parts hold %00; two distinct contacts"),
    Case("esc02", "3.1.1.5", "Use of % When It Is Not an Escape", True, 501,
         "RE%47IST%45R is an unknown method, not REGISTER; %Z%45 in quoted strings is no escape"),
    Case("lwsdisp", "3.1.1.6", "Message with No LWS between Display Name and <", True, None,
         "caller<sip:...>: accepted, a known bug in the RFC 3261 grammar"),
    Case("longreq", "3.1.1.7", "Long Values in Header Fields", True, None,
         "very long header values, display names, many Vias and Contacts"),
    Case("dblreq", "3.1.1.8", "Extra Trailing Octets in a UDP Datagram", True, None,
         "process the REGISTER (Content-Length: 0), ignore the INVITE after it"),
    Case("semiuri", "3.1.1.9", "Semicolon-Separated Parameters in URI User Part", True, None,
         "Request-URI user part is 'user;par=u%40example.net'"),
    Case("transports", "3.1.1.10", "Varied and Unknown Transport Types", True, None,
         "Vias with UDP, SCTP, TLS, UNKNOWN and TCP"),
    Case("mpart01", "3.1.1.11", "Multipart MIME Message", True, None,
         "MESSAGE with a multipart/mixed body holding binary octets"),
    Case("unreason", "3.1.1.12", "Unusual Reason Phrase", True, DROP,
         "200 whose reason phrase has UTF-8; valid, and no transaction of ours matches it"),
    Case("noreason", "3.1.1.13", "Empty Reason Phrase", True, DROP,
         "'SIP/2.0 100 ' with an empty reason phrase; valid, no transaction matches"),
    # §3.1.2 Invalid messages
    Case("badinv01", "3.1.2.1", "Extraneous Header Field Separators", False, 400,
         "Via ';;,;,,' and Contact ';;;;'", parse_status=400),
    Case("clerr", "3.1.2.2", "Content Length Larger Than Message", False, 400,
         "over UDP: answer 400 (over TCP one would wait for more octets)", parse_status=400),
    Case("ncl", "3.1.2.3", "Negative Content-Length", False, 400,
         "Content-Length: -999; over TCP the connection would be closed", parse_status=400),
    Case("scalar02", "3.1.2.4", "Request Scalar Fields with Overlarge Values", False, 400,
         "CSeq beyond 2**32-1 forces the 400 (Max-Forwards 300, Expires 10**100 alone need not)",
         parse_status=400),
    Case("scalarlg", "3.1.2.5", "Response Scalar Fields with Overlarge Values", False, DROP,
         "a response: discarded (CSeq beyond 2**32-1, Warning code of four digits)"),
    Case("quotbal", "3.1.2.6", "Unterminated Quoted String in Display Name", False, 400,
         "To: \"Mr. J. User <sip:...>", parse_status=400),
    Case("ltgtruri", "3.1.2.7", "<> Enclosing Request-URI", False, 400,
         "INVITE <sip:user@example.com> SIP/2.0", parse_status=400),
    Case("lwsruri", "3.1.2.8", "Malformed SIP Request-URI (embedded LWS)", False, 400,
         "INVITE sip:user@example.com; lr SIP/2.0", parse_status=400),
    Case("lwsstart", "3.1.2.9", "Multiple SP Separating Request-Line Elements", False, 400,
         "two spaces between the Request-Line elements", parse_status=400),
    Case("trws", "3.1.2.10", "SP Characters at End of Request-Line", False, 400,
         "spaces after SIP/2.0", parse_status=400),
    Case("escruri", "3.1.2.11", "Escaped Headers in SIP Request-URI", False, 400,
         "headers are not allowed in a Request-URI (RFC 3261 §19.1.1 table 1); "
         "an element may instead ignore them", parse_status=400),
    Case("baddate", "3.1.2.12", "Invalid Time Zone in Date Header Field", False, 400,
         "Date in EST; RFC 3261 allows only GMT. An element may instead ignore the Date",
         parse_status=400),
    Case("regbadct", "3.1.2.13", "Failure to Enclose name-addr URI in <>", False, 400,
         "Contact addr-spec holding '?': it must be a name-addr (RFC 3261 §20.10)", parse_status=400),
    Case("badaspec", "3.1.2.14", "Spaces within addr-spec", False, 400,
         "To: \"Watson, Thomas\" < sip:t.watson@example.org >", parse_status=400),
    Case("baddn", "3.1.2.15", "Non-token Characters in Display Name", False, 400,
         "unquoted display names with commas (the file also ends without the empty line)",
         parse_status=400),
    Case("badvers", "3.1.2.16", "Unknown Protocol Version", False, 505,
         "SIP/7.0", parse_status=505),
    Case("mismatch01", "3.1.2.17", "Start Line and CSeq Method Mismatch", False, 400,
         "OPTIONS with CSeq ... INVITE", parse_status=400),
    Case("mismatch02", "3.1.2.18", "Unknown Method with CSeq Method Mismatch", False, 501,
         "NEWMETHOD with CSeq ... INVITE: 501 preferred, 400 acceptable",
         frozenset({400}), parse_status=501),
    Case("bigcode", "3.1.2.19", "Overlarge Response Code", False, DROP,
         "SIP/2.0 4294967301: a response, dropped"),
    # §3.2 Transaction layer semantics
    Case("badbranch", "3.2.1", "Missing Transaction Identifier", True, None,
         "branch=z9hG4bK with nothing after the cookie: parse it, then answer 400 statelessly "
         "or fall back to RFC 2543 transaction matching", frozenset({400})),
    # §3.3 Application layer semantics
    Case("insuf", "3.3.1", "Missing Required Header Fields", False, 400,
         "no Call-ID, From, To: must not break, ideally answer 400 (only Via and CSeq to echo)",
         parse_status=400),
    Case("unkscm", "3.3.2", "Request-URI with Unknown Scheme", True, 416,
         "nobodyKnowsThisScheme:totallyopaquecontent"),
    Case("novelsc", "3.3.3", "Request-URI with Known but Atypical Scheme", True, 416,
         "soap.beep://...: 416 if the scheme is never accepted (404 if some such URIs are)",
         frozenset({404})),
    Case("unksm2", "3.3.4", "Unknown URI Schemes in Header Fields", True, 400,
         "REGISTER with To isbn:, From http:, Contact name:: a registrar answers 400 "
         "(the AOR must be SIP or SIPS); a proxy routes it like any request", frozenset({None})),
    Case("bext01", "3.3.5", "Proxy-Require and Require", True, 420,
         "unknown option tags in Require (and Proxy-Require): 420 with Unsupported"),
    Case("invut", "3.3.6", "Unknown Content-Type", True, 415,
         "INVITE with application/unknownformat: an endpoint answers 415 (a proxy forwards)",
         frozenset({None})),
    Case("regaut01", "3.3.7", "Unknown Authorization Scheme", True, 401,
         "REGISTER with Authorization: NoOneKnowsThisScheme: a registrar that authenticates "
         "challenges with a scheme it knows", frozenset({None, 405})),
    Case("multi01", "3.3.8", "Multiple Values in Single Value Required Fields", False, 400,
         "two Call-IDs, CSeqs, Tos, Froms, Max-Forwards", parse_status=400),
    Case("mcl01", "3.3.9", "Multiple Content-Length Values", False, 400,
         "two Content-Length headers: answer an error (over TCP: close the connection)",
         parse_status=400),
    Case("bcast", "3.3.10", "200 OK Response with Broadcast Via Header Field Value", True, DROP,
         "valid; discard it, never forward a response to 255.255.255.255"),
    Case("zeromf", "3.3.11", "Max-Forwards of Zero", True, 483,
         "a proxy answers 483 and does not forward; an endpoint processes it as if positive",
         frozenset({None})),
    Case("cparam01", "3.3.12", "REGISTER with a Contact Header Parameter", True, None,
         "addr-spec Contact: ';unknownparam' is a contact parameter, not a URI parameter"),
    Case("cparam02", "3.3.13", "REGISTER with a url-parameter", True, None,
         "name-addr Contact: ';unknownparam' is a URI parameter and stays in the binding"),
    Case("regescrt", "3.3.14", "REGISTER with a URL Escaped Header", True, None,
         "Contact URI with ?Route=%3Csip:sip.example.com%3E: the binding keeps it as is"),
    Case("sdp01", "3.3.15", "Unacceptable Accept Offering", True, 406,
         "Accept: text/nobodyKnowsThis on an INVITE: 406 (400 also appropriate)", frozenset({400})),
    # §3.4 Backward compatibility
    Case("inv2543", "3.4.1", "INVITE with RFC 2543 Syntax", True, None,
         "no branch, no From tag, no Content-Length (body to the end of the datagram), "
         "no Max-Forwards"),
]  # fmt: skip

CASES: dict[str, Case] = {case.name: case for case in _CASES}
EXPECTED: dict[str, int | str | None] = {case.name: case.answer for case in _CASES}
VALID = frozenset(case.name for case in _CASES if case.valid)
INVALID = frozenset(case.name for case in _CASES if not case.valid)


def folder() -> Path:
    """Where the 49 .dat files are: /work/shared/rfc4475 next to the checkout."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "rfc4475"
