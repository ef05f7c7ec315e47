"""Digest hashing, the server (challenge/verify) and the client (answer)."""

from __future__ import annotations

import hashlib

import pytest
from twisted.internet.task import Clock

from phpvoip.sip.authheaders import Challenge, parse_challenge, parse_credentials
from phpvoip.sip.digest import (
    DigestClient,
    DigestServer,
    Outcome,
    UnsupportedChallenge,
    answer_challenge,
    canonical_algorithm,
    choose_challenge,
    compute_response,
    ha1,
)

# RFC 7616 §3.9.1
R7616 = {
    "realm": "http-auth@example.org",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}
R7616_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}

REALM = "pbx.example"
USERS = {"1001": "secret1", "alice": "wonder land"}


def lookup(username, realm, algorithm):
    password = USERS.get(username)
    return None if password is None else ha1(username, realm, password, algorithm)


def make_server(clock=None, **kw):
    return DigestServer(REALM, b"k" * 32, clock or Clock(), **kw)


def answer_first(server, method="REGISTER", uri="sip:pbx.example", user="1001", password="secret1", **kw):
    """Answer the first challenge the server sends, as a client would."""
    challenge = parse_challenge(server.challenge()[0])
    return parse_credentials(answer_challenge(challenge, method, uri, user, password, **kw))


# -- hashing against the RFC examples ------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_response(algorithm):
    """The client reproduces the RFC 7616 §3.9.1 responses for Mufasa."""
    text = (
        f'Digest realm="{R7616["realm"]}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{R7616["nonce"]}", opaque="{R7616["opaque"]}"'
    )
    value = answer_challenge(
        parse_challenge(text), "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce=R7616["cnonce"]
    )
    cred = parse_credentials(value)
    assert cred.response == R7616_RESPONSES[algorithm]
    assert (cred.qop, cred.nc, cred.cnonce) == ("auth", "00000001", R7616["cnonce"])
    assert cred.opaque == R7616["opaque"] and cred.algorithm == algorithm
    assert "qop=auth," in value and "nc=00000001" in value and f"algorithm={algorithm}" in value


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_verifies_server_side(algorithm):
    """compute_response with the stored HA1 gives the RFC 7616 §3.9.1 response."""
    key = ha1("Mufasa", R7616["realm"], "Circle of Life", algorithm)
    got = compute_response(
        algorithm,
        key,
        R7616["nonce"],
        "GET",
        "/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce=R7616["cnonce"],
    )
    assert got == R7616_RESPONSES[algorithm]


def test_rfc2617_example():
    """The RFC 2617 §3.5 example (MD5, qop=auth) gives its published response."""
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    cred = parse_credentials(
        answer_challenge(challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b")
    )
    assert cred.response == "6629fae49393a05397450978507c4ef1"
    assert cred.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    assert "algorithm" not in cred.params  # not named by the server, so not echoed


def test_no_qop_form_is_rfc2069():
    """Without qop the response is H(HA1:nonce:HA2) and no nc/cnonce is sent."""
    value = answer_challenge(parse_challenge('Digest realm="r", nonce="n"'), "INVITE", "sip:b@r", "a", "p")
    cred = parse_credentials(value)
    h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    assert cred.response == h(f"{h('a:r:p')}:n:{h('INVITE:sip:b@r')}")
    assert cred.nc is None and cred.cnonce is None and cred.qop is None


def test_auth_int_hashes_the_body():
    """qop=auth-int puts H(body) into A2 (RFC 7616 §3.4.3)."""
    challenge = parse_challenge('Digest realm="r", nonce="n", qop="auth-int"')
    a = parse_credentials(answer_challenge(challenge, "INVITE", "sip:b", "u", "p", cnonce="c", body=b"v=0"))
    b = parse_credentials(answer_challenge(challenge, "INVITE", "sip:b", "u", "p", cnonce="c", body=b"v=1"))
    assert a.qop == "auth-int" and a.response != b.response


def test_sess_variant_folds_nonce_and_cnonce():
    """MD5-sess uses H(HA1:nonce:cnonce) as the key (RFC 7616 §3.4.2)."""
    h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    key = h(f"{h('u:r:p')}:n:c")
    expected = h(f"{key}:n:00000001:c:auth:{h('GET:/')}")
    assert (
        compute_response("MD5-sess", h("u:r:p"), "n", "GET", "/", qop="auth", nc="00000001", cnonce="c")
        == expected
    )


def test_canonical_algorithm_names():
    """Algorithm names match case-insensitively; unknown ones are None; absent is MD5."""
    assert canonical_algorithm("sha-256") == "SHA-256"
    assert canonical_algorithm("md5-SESS") == "MD5-sess"
    assert canonical_algorithm(None) == "MD5"
    assert canonical_algorithm("AKAv1-MD5") is None


# -- server --------------------------------------------------------------------------


def test_challenge_lists_sha256_first_md5_last():
    """challenge() gives one value per algorithm, SHA-256 first and MD5 last, with
    qop=auth, one fresh nonce and opaque (RFC 8760 §2.4)."""
    server = make_server()
    values = server.challenge()
    parsed = [parse_challenge(v) for v in values]
    assert [c.algorithm for c in parsed] == ["SHA-256", "MD5"]
    for c in parsed:
        assert c.realm == REALM and c.qop_options == ["auth"] and c.opaque and not c.stale
        assert 'qop="auth"' in str(c) and "algorithm=" in str(c)
    assert parsed[0].nonce == parsed[1].nonce
    assert parse_challenge(server.challenge()[0]).nonce != parsed[0].nonce


def test_challenge_stale_flag():
    """challenge(stale=True) marks every value stale=true."""
    assert all(parse_challenge(v).stale for v in make_server().challenge(stale=True))


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
@pytest.mark.parametrize("qop", [True, False])
def test_round_trip(algorithm, qop):
    """A client answering either algorithm, with or without qop, is accepted."""
    server = make_server()
    challenge = next(c for c in server.challenges() if c.algorithm == algorithm)
    if not qop:
        del challenge.params["qop"]
    cred = parse_credentials(
        answer_challenge(challenge, "REGISTER", "sip:pbx.example", "alice", "wonder land")
    )
    result = server.verify(cred, "REGISTER", lookup)
    assert result.ok, result
    assert (result.username, result.algorithm) == ("alice", algorithm)


def test_sess_round_trip_when_offered():
    """A server offering SHA-256-sess accepts a client answering it."""
    server = make_server(algorithms=("SHA-256-sess",))
    assert server.verify(answer_first(server), "REGISTER", lookup).ok


def test_auth_int_round_trip_when_offered():
    """With qop auth-int offered, the body is part of what is verified."""
    server = make_server(qop=("auth-int",))
    cred = answer_first(server, "INVITE", body=b"v=0\r\n")
    assert server.verify(cred, "INVITE", lookup, body=b"v=0\r\n").ok
    assert server.verify(
        answer_first(server, "INVITE", body=b"v=0\r\n"), "INVITE", lookup, body=b"x"
    ).outcome is (Outcome.FAILED)


def test_wrong_password_and_unknown_user_look_the_same():
    """A wrong password and an unknown user give the same outcome and reason."""
    server = make_server()
    wrong = server.verify(answer_first(server, password="guess"), "REGISTER", lookup)
    unknown = server.verify(answer_first(server, user="nobody", password="guess"), "REGISTER", lookup)
    assert wrong.outcome is unknown.outcome is Outcome.FAILED
    assert wrong.reason == unknown.reason


def test_method_is_part_of_the_response():
    """Credentials made for REGISTER do not pass for INVITE."""
    server = make_server()
    assert server.verify(answer_first(server, "REGISTER"), "INVITE", lookup).outcome is Outcome.FAILED


def test_stale_after_lifetime():
    """A nonce older than its lifetime gives STALE (when the response is right)."""
    clock = Clock()
    server = make_server(clock, nonce_lifetime=300)
    cred = answer_first(server)
    clock.advance(299)
    assert server.verify(cred, "REGISTER", lookup).ok
    cred2 = answer_first(server)
    clock.advance(301)
    result = server.verify(cred2, "REGISTER", lookup)
    assert result.outcome is Outcome.STALE and result.stale


def test_stale_needs_a_right_response():
    """An expired nonce with a wrong response is FAILED, not STALE (RFC 7616 §3.3)."""
    clock = Clock()
    server = make_server(clock)
    cred = answer_first(server, password="guess")
    clock.advance(1000)
    assert server.verify(cred, "REGISTER", lookup).outcome is Outcome.FAILED


def test_forged_nonce_is_invalid():
    """A nonce we did not mint, or one altered by a single character, is INVALID."""
    server = make_server()
    challenge = server.challenges()[0]
    nonce = challenge.nonce
    altered = nonce[:10] + ("A" if nonce[10] != "A" else "B") + nonce[11:]
    for bad in (altered, "x" * len(nonce), "short", nonce + "A"):
        challenge.params["nonce"] = bad
        cred = parse_credentials(
            answer_challenge(challenge, "REGISTER", "sip:pbx.example", "1001", "secret1")
        )
        assert server.verify(cred, "REGISTER", lookup).outcome is Outcome.INVALID


def test_nonce_from_another_secret_is_invalid():
    """A nonce minted by a server with another secret (say, before a restart) is INVALID."""
    other = DigestServer(REALM, b"other-secret", Clock())
    server = make_server()
    cred = answer_first(other)
    del cred.params["opaque"]
    assert server.verify(cred, "REGISTER", lookup).outcome is Outcome.INVALID


def test_source_bound_nonce():
    """A nonce bound to one source host does not pass from another."""
    server = make_server()
    challenge = parse_challenge(server.challenge(source="127.0.0.1")[0])
    cred = parse_credentials(answer_challenge(challenge, "REGISTER", "sip:pbx.example", "1001", "secret1"))
    assert server.verify(cred, "REGISTER", lookup, source="127.0.0.2").outcome is Outcome.INVALID
    assert server.verify(cred, "REGISTER", lookup, source="127.0.0.1").ok


def test_opaque_must_be_ours_when_present():
    """An echoed opaque that is not ours is INVALID; a missing one is tolerated."""
    server = make_server()
    cred = answer_first(server)
    cred.params["opaque"] = "nope"
    assert server.verify(cred, "REGISTER", lookup).outcome is Outcome.INVALID
    cred = answer_first(server)
    del cred.params["opaque"]
    assert server.verify(cred, "REGISTER", lookup).ok


def test_nc_replay_refused():
    """The same nonce count twice is a REPLAY; a higher one passes, a lower one not."""
    server = make_server()
    challenge = server.challenges()[0]

    def with_nc(nc):
        value = answer_challenge(challenge, "REGISTER", "sip:pbx.example", "1001", "secret1", nc=nc)
        return parse_credentials(value)

    first = with_nc(1)
    assert server.verify(first, "REGISTER", lookup).ok
    again = server.verify(first, "REGISTER", lookup)
    assert again.outcome is Outcome.REPLAY and again.stale
    assert server.verify(with_nc(3), "REGISTER", lookup).ok
    assert server.verify(with_nc(2), "REGISTER", lookup).outcome is Outcome.REPLAY


def test_failed_attempts_do_not_burn_nonce_counts():
    """A wrong response does not record its nc, so it cannot lock out the real user."""
    server = make_server()
    challenge = server.challenges()[0]
    bad = parse_credentials(
        answer_challenge(challenge, "REGISTER", "sip:pbx.example", "1001", "guess", nc=0xFFFFFFFF)
    )
    assert server.verify(bad, "REGISTER", lookup).outcome is Outcome.FAILED
    good = parse_credentials(answer_challenge(challenge, "REGISTER", "sip:pbx.example", "1001", "secret1"))
    assert server.verify(good, "REGISTER", lookup).ok


def test_no_qop_nonce_is_single_use():
    """Without qop there is no nc, so a nonce answers one request only."""
    server = make_server()
    challenge = server.challenges()[1]
    del challenge.params["qop"]
    cred = parse_credentials(answer_challenge(challenge, "INVITE", "sip:1002@pbx.example", "1001", "secret1"))
    assert server.verify(cred, "INVITE", lookup).ok
    assert server.verify(cred, "INVITE", lookup).outcome is Outcome.REPLAY


def test_no_qop_refused_when_not_allowed():
    """allow_no_qop=False makes an RFC 2069 answer a BAD request."""
    server = make_server(allow_no_qop=False)
    challenge = server.challenges()[0]
    del challenge.params["qop"]
    cred = parse_credentials(answer_challenge(challenge, "REGISTER", "sip:pbx.example", "1001", "secret1"))
    assert server.verify(cred, "REGISTER", lookup).outcome is Outcome.BAD


def test_replay_table_shrinks_as_nonces_expire():
    """Entries for expired nonces are swept, with the injected clock."""
    clock = Clock()
    server = make_server(clock, nonce_lifetime=60)
    for _ in range(5):
        assert server.verify(answer_first(server), "REGISTER", lookup).ok
    assert server.tracked == 5
    clock.advance(61)
    assert server.verify(answer_first(server), "REGISTER", lookup).ok
    assert server.tracked == 1


def test_replay_table_is_bounded_and_safe_when_full():
    """Above max_tracked the oldest entries go, and their nonces turn STALE rather
    than becoming replayable."""
    clock = Clock()
    server = make_server(clock, max_tracked=2)
    first = answer_first(server)
    assert server.verify(first, "REGISTER", lookup).ok
    for _ in range(2):
        clock.advance(1)
        assert server.verify(answer_first(server), "REGISTER", lookup).ok
    assert server.tracked == 2
    assert server.verify(first, "REGISTER", lookup).outcome is Outcome.STALE


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        ({"username": None}, Outcome.BAD),
        ({"uri": None}, Outcome.BAD),
        ({"response": None}, Outcome.BAD),
        ({"nonce": None}, Outcome.BAD),
        ({"realm": None}, Outcome.BAD),
        ({"cnonce": None}, Outcome.BAD),
        ({"nc": None}, Outcome.BAD),
        ({"nc": "xyz"}, Outcome.BAD),
        ({"nc": "123456789"}, Outcome.BAD),
        ({"qop": "auth-int"}, Outcome.BAD),
        ({"algorithm": "SHA-512-256"}, Outcome.BAD),
        ({"algorithm": "AKAv1-MD5"}, Outcome.BAD),
        ({"realm": "elsewhere"}, Outcome.FAILED),
        ({"response": "0" * 64}, Outcome.FAILED),
    ],
)
def test_verify_checks_each_parameter(change, outcome):
    """Missing parameters, unoffered algorithm/qop and bad nc are BAD; another
    realm or a wrong response FAILED (RFC 7616 §3.4)."""
    server = make_server()
    cred = answer_first(server)
    for name, value in change.items():
        if value is None:
            del cred.params[name]
        else:
            cred.params[name] = value
    assert server.verify(cred, "REGISTER", lookup).outcome is outcome


def test_verify_refuses_other_schemes():
    """Basic (forbidden in SIP, RFC 3261 §22.1) is a BAD request."""
    cred = parse_credentials('Basic username="1001", realm="pbx.example"')
    assert make_server().verify(cred, "REGISTER", lookup).outcome is Outcome.BAD


def test_md5_algorithm_absent_means_md5():
    """Credentials without algorithm are taken as MD5, which we offer."""
    server = make_server()
    challenge = server.challenges()[1]
    del challenge.params["algorithm"]
    cred = parse_credentials(answer_challenge(challenge, "REGISTER", "sip:pbx.example", "1001", "secret1"))
    assert "algorithm" not in cred.params
    assert server.verify(cred, "REGISTER", lookup).ok


def test_md5_only_server_refuses_sha256_answer():
    """A server offering MD5 only refuses SHA-256 credentials as not offered."""
    sha_server = make_server()
    md5_server = DigestServer(REALM, b"k" * 32, Clock(), algorithms=("MD5",))
    assert [parse_challenge(v).algorithm for v in md5_server.challenge()] == ["MD5"]
    cred = answer_first(sha_server)  # SHA-256, same secret so the nonce is valid
    assert md5_server.verify(cred, "REGISTER", lookup).outcome is Outcome.BAD


def test_uppercase_hex_response_accepted():
    """A response in upper-case hex is still the same digest."""
    server = make_server()
    cred = answer_first(server)
    cred.params["response"] = cred.params["response"].upper()
    assert server.verify(cred, "REGISTER", lookup).ok


def test_find_credentials_picks_our_realm():
    """Among several Authorization values the one for our realm is taken."""
    server = make_server()
    ours = str(answer_first(server))
    theirs = ours.replace('realm="pbx.example"', 'realm="proxy.example"')
    assert server.find_credentials([theirs, ours]).realm == REALM
    assert server.find_credentials([theirs]) is None
    assert server.find_credentials(["garbage ==", ours]).realm == REALM
    with pytest.raises(ValueError):
        server.find_credentials(["garbage =="])


def test_server_logs_no_secrets():
    """verify() logs outcome and user, never the response or the password."""
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        server = make_server()
        cred = answer_first(server, password="hunter2")
        server.verify(cred, "REGISTER", lookup)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert events, "expected a debug event"
    text = repr(events)
    assert cred.response not in text and "hunter2" not in text


def test_server_rejects_bad_configuration():
    """Unknown algorithms or qop values in the configuration are refused."""
    with pytest.raises(ValueError):
        DigestServer(REALM, b"k", Clock(), algorithms=("SHA-1",))
    with pytest.raises(ValueError):
        DigestServer(REALM, b"k", Clock(), algorithms=())
    with pytest.raises(ValueError):
        DigestServer(REALM, b"k", Clock(), qop=("auth-conf",))


# -- client --------------------------------------------------------------------------


def test_choose_prefers_sha256_whatever_the_order():
    """choose_challenge takes SHA-256 over MD5 even when MD5 is listed first."""
    md5 = 'Digest realm="r", nonce="n", algorithm=MD5, qop="auth"'
    sha = 'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth"'
    assert choose_challenge([md5, sha]).algorithm == "SHA-256"
    assert choose_challenge([sha, md5]).algorithm == "SHA-256"
    assert choose_challenge([md5, sha], strongest=False).algorithm == "MD5"


def test_choose_skips_what_it_cannot_answer():
    """Unparseable values, other schemes, unknown algorithms and qops are skipped."""
    values = [
        "garbage ==",
        'Basic realm="r"',
        'Digest realm="r", nonce="n", algorithm=AKAv1-MD5',
        'Digest realm="r", nonce="n", qop="auth-conf"',
        'Digest realm="r", nonce="n", algorithm=MD5-sess',  # -sess needs qop
        'Digest realm="r", nonce="m"',
    ]
    assert choose_challenge(values).nonce == "m"
    assert choose_challenge(values[:5]) is None


def test_choose_sticks_to_the_first_realm():
    """Challenges of a second realm do not displace the first realm's."""
    values = ['Digest realm="a", nonce="1", algorithm=MD5', 'Digest realm="b", nonce="2", algorithm=SHA-256']
    assert choose_challenge(values).realm == "a"


def test_answer_refuses_unsupported():
    """answer_challenge raises UnsupportedChallenge for what it cannot compute."""
    with pytest.raises(UnsupportedChallenge):
        answer_challenge(
            parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-1'), "GET", "/", "u", "p"
        )
    with pytest.raises(UnsupportedChallenge):
        answer_challenge(Challenge("Digest", {"realm": "r"}), "GET", "/", "u", "p")


def test_answer_with_ha1_instead_of_password():
    """A client given HA1 answers exactly as one given the password."""
    c = parse_challenge('Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256')
    by_password = answer_challenge(c, "GET", "/", "u", "p", cnonce="c")
    by_ha1 = answer_challenge(c, "GET", "/", "u", ha1_hex=ha1("u", "r", "p", "SHA-256"), cnonce="c")
    assert by_password == by_ha1


def test_client_counts_nonce_uses():
    """DigestClient increments nc per request on the same nonce and resets it on a new one."""
    server = make_server()
    client = DigestClient("1001", "secret1")
    assert client.update(server.challenge())
    for expected in ("00000001", "00000002", "00000003"):
        cred = parse_credentials(client.authorization("REGISTER", "sip:pbx.example"))
        assert cred.nc == expected and cred.algorithm == "SHA-256"
        assert server.verify(cred, "REGISTER", lookup).ok
    assert client.update(server.challenge(stale=True), had_credentials=True)
    assert parse_credentials(client.authorization("REGISTER", "sip:pbx.example")).nc == "00000001"


def test_client_stops_when_its_password_is_refused():
    """A fresh non-stale challenge right after a first-use answer means the password
    was refused: update() says not to retry."""
    server = make_server()
    client = DigestClient("1001", "wrong")
    assert client.update(server.challenge())
    cred = parse_credentials(client.authorization("REGISTER", "sip:pbx.example"))
    assert server.verify(cred, "REGISTER", lookup).outcome is Outcome.FAILED
    assert not client.update(server.challenge(), had_credentials=True)


def test_client_retries_once_when_a_reused_nonce_is_refused():
    """A refusal of a reused nonce (nc > 1) earns one retry with the new nonce."""
    client = DigestClient("1001", "secret1")
    server = make_server()
    client.update(server.challenge())
    client.authorization("REGISTER", "sip:pbx.example")
    client.authorization("REGISTER", "sip:pbx.example")
    assert client.update(server.challenge(), had_credentials=True)
    assert client.nc == 0


def test_client_header_name_follows_407():
    """After a 407 the credentials go in Proxy-Authorization (RFC 3261 §22.3)."""
    client = DigestClient("1001", "secret1")
    client.update(make_server().challenge(), proxy=True)
    assert client.header_name == "Proxy-Authorization"
    client.update(make_server().challenge())
    assert client.header_name == "Authorization"


def test_client_repr_hides_password():
    """repr(DigestClient) shows the user but not the password."""
    assert "secret1" not in repr(DigestClient("1001", "secret1"))


def test_client_needs_a_challenge_first():
    """authorization() before any challenge is a usage error."""
    with pytest.raises(ValueError):
        DigestClient("u", "p").authorization("REGISTER", "sip:x")


@pytest.mark.skipif(canonical_algorithm("SHA-512-256") is None, reason="no SHA-512/256 in this OpenSSL")
def test_sha512_256_round_trip_and_preference():
    """SHA-512-256 (RFC 8760) round-trips and a client prefers it over SHA-256."""
    server = make_server(algorithms=("SHA-512-256", "SHA-256", "MD5"))
    challenge = choose_challenge(reversed(server.challenge()))
    assert challenge.algorithm == "SHA-512-256"
    cred = parse_credentials(answer_challenge(challenge, "REGISTER", "sip:pbx.example", "1001", "secret1"))
    assert len(cred.response) == 64
    assert server.verify(cred, "REGISTER", lookup).ok


def test_nonce_count_out_of_range_refused():
    """answer_challenge refuses an nc that does not fit 8 hex digits."""
    with pytest.raises(ValueError):
        answer_challenge(
            parse_challenge('Digest realm="r", nonce="n", qop="auth"'), "GET", "/", "u", "p", nc=0
        )
