# The board's k-of-n check of a bundle from books kept by bookkeepers: the organization signs
# the set of bookkeepers (3 keys, quorum 2), a quorum of distinct bookkeepers signs the epoch
# record. Vectors made on the host (leither_host.ledger.bookkeepers): bookkeeper seeds 0x70..72
# repeated, bookkeepers 0 and 2 signed epoch 5 (alice: balance 900, a member since 2000).
# Ed25519 checks need the comb table (~40 KB): 96K on the 64-bit unix port (the 32-bit ESP32
# stand-in checks a whole bundle at 64K: bench/ledger.py).
from leither import smtverify
from leither.errors import AuthError

from testutil import raises, unhex

MP_HEAP = "96K"
ORG_KEY = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
BOOKS = (
    "a9636f7267781c3252426f70414b53385472425235696f7a536a3354414a6f79556e6f63736967584036241c"
    "33222d9349d9c3302e8ae6519ad0c5e019a4494cb92e1501347df53297190c9aaf1208f310bd452559bf32de"
    "1053c7fdff569ac654f3882ff91e637d016465746364816e3132372e302e302e313a32333739646b65797383"
    "582019204c8c3ba85ba059cd18ac9017bd02a18da5d10c68fb779a34be43ef0677915820e2fe2a39b7326642"
    "827d6d82d497622cd6c297fe78270eaa436b01f086b6f3cb58205b6489c9c7fd0dcf50545e7c164886ef4049"
    "1ec06c7f1b123041797e8117535e6474696d650564747970656b626f6f6b6b656570657273656e616d657383"
    "63626b3063626b3163626b326671756f72756d026776657273696f6e01"
)
RECORD_BOOKS = (
    "a7636f7267781c3252426f70414b53385472425235696f7a536a3354414a6f79556e6f64726f6f7458203038"
    "eb24b50a1e52a8c9fac6ba80baac8fec3e79dee4d58e3a600e16a19e13a5647369677382820058406722b5fd"
    "a3f8a44a0f1b580e09bd07e841eb1fb4a38c808f079fd0fc455e44769985c4e3c4d327eccde455967d54354d"
    "fe49a9ece92fa278ce8f1784dfa53b0882025840c8da86c7314dddc03fd5c6f14ca0364c5d796de98c907288"
    "669584c87a766a7e66f7275596261744b8564e4f20cf491a20ef61526e411c9240672d6d6b20290464747970"
    "656565706f636865626f6f6b73016565706f636805656d726f6f745820c5824032e233dd0c41e72bf0b15787"
    "4f6e01aaefb64afb49ba5b95ec5cbd90a0"
)
BOOKS_QUORUM_1 = (
    "a9636f7267781c3252426f70414b53385472425235696f7a536a3354414a6f79556e6f637369675840ddbe21"
    "9a404cba3a817e1a402e5960aa8d02e770e9fcaefd8da486df03241dbd67780b73685ffdfa755fc70b8083ce"
    "4a8bc44642b28cdb6ded010830d74ada0a6465746364816e3132372e302e302e313a32333739646b65797383"
    "582019204c8c3ba85ba059cd18ac9017bd02a18da5d10c68fb779a34be43ef0677915820e2fe2a39b7326642"
    "827d6d82d497622cd6c297fe78270eaa436b01f086b6f3cb58205b6489c9c7fd0dcf50545e7c164886ef4049"
    "1ec06c7f1b123041797e8117535e6474696d650564747970656b626f6f6b6b656570657273656e616d657383"
    "63626b3063626b3163626b326671756f72756d016776657273696f6e01"
)


def _bundle(record=None, books=None):
    from leither import cbor, ids

    alice = ids.make_id(b"alice-key")
    return cbor.dumps({"org_key": unhex(ORG_KEY), "record": record or unhex(RECORD_BOOKS),
                       "member": alice, "key": ids.id_raw(alice),
                       "proof": b"\x00\x00" + smtverify.encode_value(900, 1),
                       "mproof": b"\x00\x00" + smtverify.encode_value(2000, 2),
                       "books": books or unhex(BOOKS)})


def test_quorum_of_bookkeepers_accepted():
    got = smtverify.check_bundle(_bundle(), unhex(ORG_KEY))
    assert (got["epoch"], got["balance"], got["role"]) == (5, 900, "member")


def test_below_quorum_or_one_signer_twice_refused():
    from leither import cbor

    record = cbor.loads(unhex(RECORD_BOOKS))
    sigs = record["sigs"]
    record["sigs"] = sigs[:1]
    err = raises(AuthError, smtverify.check_bundle, _bundle(cbor.dumps(record)), unhex(ORG_KEY))
    assert "quorum is 2 of 3" in str(err)
    record["sigs"] = [sigs[0], sigs[0]]
    raises(AuthError, smtverify.check_bundle, _bundle(cbor.dumps(record)), unhex(ORG_KEY))
    record["sigs"] = [[1, sigs[0][1]], sigs[1]]  # a signature claimed by another bookkeeper
    raises(AuthError, smtverify.check_bundle, _bundle(cbor.dumps(record)), unhex(ORG_KEY))


def test_set_must_be_the_orgs_and_a_majority():
    raises(AuthError, smtverify.check_bundle, _bundle(books=unhex(BOOKS_QUORUM_1)),
           unhex(ORG_KEY))
    from leither import cbor

    tampered = cbor.loads(unhex(BOOKS))
    tampered["quorum"] = 1
    raises(AuthError, smtverify.check_bundle, _bundle(books=cbor.dumps(tampered)),
           unhex(ORG_KEY))
