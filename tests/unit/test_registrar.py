"""REGISTER handling (RFC 3261 §10.3): challenge, bindings, expiry, fetch, removal."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from phpvoip.interfaces import IModule, NotMine
from phpvoip.sip.address import Address
from phpvoip.sip.authheaders import parse_challenges
from phpvoip.sip.digest import answer_challenge, choose_challenge
from phpvoip.store.memory import MemoryStore
from tests.unit.registrar_fakes import (
    DOMAIN,
    NAT,
    PHONE,
    FakeEngine,
    FakeTransaction,
    Phone,
    contacts_of,
    header_values,
    registrar,
)

C1 = "<sip:1001@192.0.2.10:5060>"
C2 = "<sip:1001@192.0.2.11:5062;transport=udp>"


def challenge_params(response):
    return [c.params for v in header_values(response, "WWW-Authenticate") for c in parse_challenges(v)]


def test_registrar_provides_imodule():
    """The registrar meets the module contract."""
    module, _ = registrar()
    assert verifyObject(IModule, module)


def test_register_without_credentials_is_challenged():
    """A REGISTER without Authorization gets 401 with one challenge per offered
    algorithm, qop=auth, the same fresh nonce, and a To tag."""
    module, _ = registrar({"algorithms": ["SHA-256", "MD5"]})
    response = module.register(Phone("1001", "secret1").request([C1]), PHONE)
    assert response.status == 401
    params = challenge_params(response)
    assert [p["algorithm"] for p in params] == ["SHA-256", "MD5"]
    assert all(p["qop"] == "auth" and p["realm"] == DOMAIN for p in params)
    assert len({p["nonce"] for p in params}) == 1
    assert response.to.tag


def test_right_password_registers_with_default_expiry():
    """After the challenge, the right password binds the contact for
    default_expires and the 200 lists it with ;expires= and a Date."""
    module, engine = registrar()
    response = Phone("1001", "secret1").register(module, [C1])
    assert response.status == 200
    assert contacts_of(response) == {"sip:1001@192.0.2.10:5060": {"expires": "3600"}}
    assert response.get("Date") == "Thu, 01 Jan 1970 00:00:00 GMT"
    [binding] = module.contacts("1001")
    assert binding.source == PHONE and binding.expires_at == 3600
    assert len(engine.store.bindings) == 1


def test_sha256_answer_registers():
    """A phone that answers the SHA-256 challenge registers too."""
    module, _ = registrar({"algorithms": ["SHA-256", "MD5"]})
    phone = Phone("1001", "secret1")
    first = module.register(phone.request([C1]), PHONE)
    assert choose_challenge(header_values(first, "WWW-Authenticate")).algorithm == "SHA-256"
    assert phone.register(module, [C1]).status == 200


def test_wrong_password_is_challenged_again_and_binds_nothing():
    """Wrong credentials earn a fresh (not stale) 401 and no binding."""
    module, _ = registrar()
    response = Phone("1001", "wrong").register(module, [C1])
    assert response.status == 401
    assert all("stale" not in p for p in challenge_params(response))
    assert module.contacts("1001") == []


def test_unknown_user_looks_like_a_wrong_password():
    """An unknown user gets exactly the answer a wrong password gets (status,
    headers, challenge parameters except the nonce): no user enumeration."""
    module, _ = registrar()
    wrong = Phone("1001", "wrong", call_id="x").register(module, [C1])
    unknown = Phone("9999", "whatever", call_id="x").register(module, ["<sip:9999@192.0.2.10>"])
    assert wrong.status == unknown.status == 401
    assert [n for n, _ in wrong.headers()] == [n for n, _ in unknown.headers()]
    strip = [{k: v for k, v in p.items() if k != "nonce"} for p in challenge_params(wrong)]
    assert strip == [{k: v for k, v in p.items() if k != "nonce"} for p in challenge_params(unknown)]
    assert module.stats["auth_failed"] == 2


def test_expires_header_and_contact_parameter():
    """The Expires header sets the interval; a contact's expires parameter wins
    over it (§10.2.1.1)."""
    module, _ = registrar()
    response = Phone("1001", "secret1").register(module, [C1, C2 + ";expires=300"], expires=600)
    assert contacts_of(response) == {
        "sip:1001@192.0.2.10:5060": {"expires": "600"},
        "sip:1001@192.0.2.11:5062;transport=udp": {"expires": "300"},
    }


def test_too_brief_is_423_with_min_expires_and_changes_nothing():
    """An interval below min_expires gets 423 with Min-Expires, and no binding of
    that request is made (§10.3 step 7)."""
    module, _ = registrar({"min_expires": 120})
    response = Phone("1001", "secret1").register(module, [C1, C2 + ";expires=30"], expires=600)
    assert response.status == 423
    assert response.get("Min-Expires") == "120"
    assert module.contacts("1001") == []


def test_too_long_is_cut_to_max_expires():
    """An interval above max_expires is granted as max_expires."""
    module, _ = registrar({"max_expires": 900})
    response = Phone("1001", "secret1").register(module, [C1], expires=86400)
    assert contacts_of(response)["sip:1001@192.0.2.10:5060"]["expires"] == "900"


def test_refresh_extends_and_keeps_one_binding():
    """A refresh with the next CSeq moves the expiry and keeps one binding."""
    module, engine = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, [C1], expires=120)
    engine.clock.advance(100)
    response = phone.register(module, [C1], expires=120)
    assert contacts_of(response) == {"sip:1001@192.0.2.10:5060": {"expires": "120"}}
    engine.clock.advance(100)
    assert len(module.contacts("1001")) == 1


def test_refresh_reusing_the_nonce_needs_no_new_challenge():
    """A refresh with the nonce of the last challenge and nc+1 is accepted at once."""
    module, _ = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, [C1])
    request = phone.request([C1], authorization=phone.client.authorization("REGISTER", f"sip:{DOMAIN}"))
    assert module.register(request, PHONE).status == 200


def test_expires_zero_removes_one_binding():
    """Expires 0 for one contact removes it and leaves the others."""
    module, engine = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, [C1, C2])
    response = phone.register(module, [C1], expires=0)
    assert list(contacts_of(response)) == ["sip:1001@192.0.2.11:5062;transport=udp"]
    assert [b.contact for b in engine.store.bindings.values()] == ["sip:1001@192.0.2.11:5062;transport=udp"]


def test_star_with_expires_zero_removes_all():
    """``Contact: *`` with Expires 0 removes every binding of the AOR."""
    module, engine = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, [C1, C2])
    response = phone.register(module, ["*"], expires=0)
    assert response.status == 200 and response.contact == []
    assert module.contacts("1001") == [] and engine.store.bindings == {}


@pytest.mark.parametrize("expires", [None, 60])
def test_star_needs_expires_zero(expires):
    """``Contact: *`` without Expires 0 is a bad request (§10.3 step 6)."""
    module, _ = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, [C1])
    response = phone.register(module, ["*"], expires=expires)
    assert response.status == 400
    assert len(module.contacts("1001")) == 1


def test_fetch_lists_bindings_with_remaining_time():
    """A REGISTER without Contact changes nothing and lists the bindings with the
    seconds they have left."""
    module, engine = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, [C1], expires=300)
    engine.clock.advance(100)
    response = phone.register(module)
    assert response.status == 200
    assert contacts_of(response) == {"sip:1001@192.0.2.10:5060": {"expires": "200"}}


def test_several_contacts_with_q_values():
    """Each contact keeps its own q; the 200 gives it back; the best q comes first."""
    module, _ = registrar()
    response = Phone("1001", "secret1").register(module, [C1 + ";q=0.5", C2 + ";q=1.0"])
    assert contacts_of(response) == {
        "sip:1001@192.0.2.11:5062;transport=udp": {"expires": "3600", "q": "1"},
        "sip:1001@192.0.2.10:5060": {"expires": "3600", "q": "0.5"},
    }
    assert [b.q for b in module.contacts("1001")] == [1.0, 0.5]


def test_each_contact_lapses_on_its_own():
    """Bindings lapse at their own expiry: the short one goes, the long one stays."""
    module, engine = registrar()
    Phone("1001", "secret1").register(module, [C1 + ";expires=60", C2 + ";expires=600"])
    engine.clock.advance(61)
    assert [b.contact for b in module.contacts("1001")] == ["sip:1001@192.0.2.11:5062;transport=udp"]
    assert len(engine.store.bindings) == 1
    engine.clock.advance(540)
    assert module.contacts("1001") == [] and engine.store.bindings == {}
    assert module.stats["lapsed"] == 2


def test_older_cseq_with_same_call_id_leaves_the_binding():
    """§10.3 step 7: a REGISTER with the binding's Call-ID and a CSeq not above
    the binding's does not change it (a late, reordered request)."""
    module, _ = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, [C1], expires=600)
    auth = phone.client.authorization("REGISTER", f"sip:{DOMAIN}")
    late = phone.request([C1], expires=0, authorization=auth, cseq=1)
    response = module.register(late, PHONE)
    assert response.status == 200
    assert contacts_of(response) == {"sip:1001@192.0.2.10:5060": {"expires": "600"}}


def test_another_call_id_may_replace_the_binding():
    """A REGISTER from another Call-ID (a rebooted phone) updates the binding
    whatever its CSeq."""
    module, _ = registrar()
    Phone("1001", "secret1", call_id="first").register(module, [C1], expires=600)
    response = Phone("1001", "secret1", call_id="second").register(module, [C1], expires=300)
    assert contacts_of(response) == {"sip:1001@192.0.2.10:5060": {"expires": "300"}}
    assert module.contacts("1001")[0].call_id == "second"


def test_equal_contacts_by_uri_rules_are_one_binding():
    """Contacts equal under §19.1.4 (host case, ignored parameters) are one binding."""
    module, _ = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, ["<sip:1001@Phone.Example:5060;rinstance=a>"])
    response = phone.register(module, ["<sip:1001@phone.example:5060;rinstance=b>"])
    assert list(contacts_of(response)) == ["sip:1001@phone.example:5060;rinstance=b"]


def test_replayed_nonce_count_is_challenged_stale():
    """Credentials replayed with the same nc get 401 stale=true (RFC 7616 §5.5)."""
    module, _ = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, [C1])
    challenge = phone.client.challenge
    replay = answer_challenge(challenge, "REGISTER", f"sip:{DOMAIN}", "1001", "secret1", nc=1, cnonce="c")
    response = module.register(phone.request([C1], authorization=replay), PHONE)
    assert response.status == 401
    assert all(p.get("stale") == "true" for p in challenge_params(response))


def test_expired_nonce_is_challenged_stale():
    """A right answer to a nonce older than nonce_lifetime gets 401 stale=true,
    and the phone then registers with the new nonce."""
    module, engine = registrar({"nonce_lifetime": 30})
    phone = Phone("1001", "secret1")
    phone.register(module, [C1])
    engine.clock.advance(31)
    auth = phone.client.authorization("REGISTER", f"sip:{DOMAIN}")
    response = module.register(phone.request([C1], authorization=auth), PHONE)
    assert response.status == 401
    assert all(p.get("stale") == "true" for p in challenge_params(response))
    phone.client.update(header_values(response, "WWW-Authenticate"), had_credentials=True)
    auth = phone.client.authorization("REGISTER", f"sip:{DOMAIN}")
    assert module.register(phone.request([C1], authorization=auth), PHONE).status == 200


def test_nonce_is_bound_to_the_source_address():
    """A nonce minted for one address does not authenticate from another."""
    module, _ = registrar()
    phone = Phone("1001", "secret1")
    phone.register(module, [C1])
    auth = phone.client.authorization("REGISTER", f"sip:{DOMAIN}")
    elsewhere = Address("udp", "203.0.113.9", 5060)
    assert module.register(phone.request([C1], authorization=auth), elsewhere).status == 401


def test_malformed_authorization_is_400():
    """Authorization that does not parse is a bad request."""
    module, _ = registrar()
    request = Phone("1001", "secret1").request([C1], authorization='Digest username="1001", realm=')
    assert module.register(request, PHONE).status == 400


def test_registering_someone_else_is_forbidden():
    """User 1001's credentials cannot register 1002's AOR (no third-party
    registration)."""
    module, _ = registrar()
    response = Phone("1001", "secret1").register(module, [C1], to_user="1002")
    assert response.status == 403
    assert module.contacts("1002") == []


def test_to_in_another_domain_is_404():
    """§10.3 step 5: an AOR not in our domain gets 404 (after authentication)."""
    module, _ = registrar()
    phone = Phone("1001", "secret1")
    phone.host = "elsewhere.example"
    request = phone.request([C1], request_host=DOMAIN)
    first = module.register(request, PHONE)
    phone.client.update(header_values(first, "WWW-Authenticate"))
    auth = phone.client.authorization("REGISTER", f"sip:{DOMAIN}")
    assert module.register(phone.request([C1], request_host=DOMAIN, authorization=auth), PHONE).status == 404


def test_request_uri_of_another_domain_is_not_ours():
    """A REGISTER for another domain (Request-URI) is left to other modules."""
    module, _ = registrar()
    with pytest.raises(NotMine):
        request = Phone("1001", "x").request([C1], request_host="elsewhere.example")
        module.request(request, FakeTransaction(), PHONE)


def test_register_to_our_address_or_alias_is_ours():
    """The switch's own address and configured aliases count as our domain."""
    module, _ = registrar({"aliases": ["pbx.example.com"]})
    for host in ("10.0.0.1", "PBX.example.com"):
        transaction = FakeTransaction()
        assert module.request(Phone("1001", "x").request([C1], request_host=host), transaction, PHONE) is True
        assert transaction.responses[0].status == 401


def test_other_methods_are_not_ours():
    """OPTIONS, MESSAGE and the like go on to other modules."""
    module, _ = registrar()
    request = Phone("1001", "x").request([C1])
    request.method = "OPTIONS"
    with pytest.raises(NotMine):
        module.request(request, FakeTransaction(), PHONE)


def test_source_address_is_recorded_for_nat():
    """The binding remembers where the REGISTER came from (received/rport),
    not the contact's private address."""
    module, _ = registrar()
    phone = Phone("1001", "secret1", source=NAT)
    phone.register(module, ["<sip:1001@10.1.1.5:5060>"])
    assert module.contacts("1001")[0].source == NAT


def test_too_many_contacts_is_forbidden():
    """More contacts than max_contacts for one AOR are refused, the rest kept."""
    module, _ = registrar({"max_contacts": 2})
    phone = Phone("1001", "secret1")
    phone.register(module, [C1, C2])
    response = phone.register(module, ["<sip:1001@192.0.2.12>"])
    assert response.status == 403
    assert len(module.contacts("1001")) == 2


def test_non_sip_contact_is_400():
    """A tel: or http: contact cannot be called: 400."""
    module, _ = registrar()
    assert Phone("1001", "secret1").register(module, ["<tel:+15551234>"]).status == 400


def test_ha1_users_register_without_a_password_in_the_config():
    """A user given as HA1 hashes registers with either algorithm."""
    from phpvoip.sip.digest import ha1

    hashes = {"ha1_md5": ha1("1003", DOMAIN, "pw3"), "ha1_sha256": ha1("1003", DOMAIN, "pw3", "SHA-256")}
    users = {"1003": hashes}
    for algorithms in (["MD5"], ["SHA-256"]):
        module, _ = registrar({"users": users, "algorithms": algorithms})
        assert Phone("1003", "pw3").register(module, ["<sip:1003@192.0.2.10>"]).status == 200


def test_realm_setting_is_used():
    """A configured realm replaces the domain in challenges."""
    module, _ = registrar({"realm": "office"})
    response = module.register(Phone("1001", "secret1").request([C1]), PHONE)
    assert {p["realm"] for p in challenge_params(response)} == {"office"}
    assert Phone("1001", "secret1").register(module, [C1]).status == 200


def test_answered_through_the_transaction():
    """request() answers through the server transaction and returns True."""
    module, _ = registrar()
    transaction = FakeTransaction()
    assert module.request(Phone("1001", "secret1").request([C1]), transaction, PHONE) is True
    assert [r.status for r in transaction.responses] == [401]


def test_not_ready_answers_503():
    """A registrar still loading its store answers 503 with Retry-After."""
    module, _ = registrar()
    module.ready = False
    response = module.register(Phone("1001", "secret1").request([C1]), PHONE)
    assert response.status == 503 and response.get("Retry-After") == "5"


def test_restart_keeps_bindings_with_their_remaining_time():
    """A registrar started again on the same store serves the bindings with the
    time they had left, and the old nonce secret still verifies."""
    store = MemoryStore()
    first, engine = registrar(engine=FakeEngine(store=store))
    phone = Phone("1001", "secret1")
    phone.register(first, [C1], expires=600)
    first.stop()
    engine.clock.advance(200)
    second, _ = registrar(engine=FakeEngine(clock=engine.clock, store=store))
    [binding] = second.contacts("1001")
    assert binding.remaining(engine.clock.seconds()) == 400
    # the nonce from before the restart is still ours
    auth = phone.client.authorization("REGISTER", f"sip:{DOMAIN}")
    response = second.register(phone.request(authorization=auth), PHONE)
    assert response.status == 200
    assert contacts_of(response) == {"sip:1001@192.0.2.10:5060": {"expires": "400"}}
    engine.clock.advance(401)
    assert second.contacts("1001") == [] and store.bindings == {}


def test_lapsed_during_downtime_are_not_restored():
    """Bindings that lapsed while the switch was down are dropped at start."""
    store = MemoryStore()
    first, engine = registrar(engine=FakeEngine(store=store))
    Phone("1001", "secret1").register(first, [C1], expires=60)
    first.stop()
    engine.clock.advance(120)
    second, _ = registrar(engine=FakeEngine(clock=engine.clock, store=store))
    assert second.contacts("1001") == [] and store.bindings == {}


def test_users_from_store():
    """With users_from_store, users kept in the store (as HA1) can register."""
    from phpvoip.sip.digest import ha1
    from phpvoip.store import UserRecord

    store = MemoryStore()
    store.save_user(UserRecord("2001", ha1("2001", DOMAIN, "pw"), ha1("2001", DOMAIN, "pw", "SHA-256")))
    module, _ = registrar({"users": {}, "users_from_store": True}, engine=FakeEngine(store=store))
    assert Phone("2001", "pw").register(module, ["<sip:2001@192.0.2.10>"]).status == 200


def test_counts_report_bindings():
    """counts() reports AORs, bindings and counters."""
    module, _ = registrar()
    Phone("1001", "secret1").register(module, [C1, C2])
    counts = module.counts()
    assert counts["aors"] == 1 and counts["bindings"] == 2 and counts["registered"] == 1
    assert counts["challenged"] == 1


def test_one_timer_whatever_the_number_of_bindings():
    """However many bindings there are, the registrar arms one timer."""
    module, engine = registrar({"users": {str(u): {"password": "pw"} for u in range(3000, 3050)}})
    for u in range(3000, 3050):
        Phone(str(u), "pw").register(module, [f"<sip:{u}@192.0.2.10>"], expires=60 + u % 7)
    assert len(module.bindings) == 50
    assert len(engine.clock.getDelayedCalls()) == 1
    engine.clock.advance(70)
    assert len(module.bindings) == 0
    assert engine.clock.getDelayedCalls() == []
