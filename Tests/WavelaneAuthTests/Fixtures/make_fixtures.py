#!/usr/bin/env python3
"""Generates the JWT test fixtures for Tests/WavelaneAuthTests (JWTTests.swift).

The fixtures are produced by an implementation independent of Wavelane's verifier:
PyJWT + cryptography (pip install pyjwt cryptography), plus Python's hmac/hashlib for
hand-crafted tokens PyJWT refuses to make (alg "none", algorithm confusion, ...).

Usage (from anywhere):
    python3 Tests/WavelaneAuthTests/Fixtures/make_fixtures.py
It (re)writes fixtures.json next to this script. Keys are freshly generated on every run,
so re-running changes every key/token; commit the regenerated fixtures.json together.

fixtures.json layout:
    times:   {"iat", "nbf", "exp", "now"}   fixed Unix times; tests pass "now" (between nbf and exp)
    secrets: {"current", "previous", "wrong"}  HMAC secrets (UTF-8 strings)
    keys:    {"rsa", "ec256", "ec384", "rsa_other", "ec256_other"}  PEM SubjectPublicKeyInfo public keys
    bad_keys: {name: PEM text}  inputs JWTVerifier.init must reject
    tokens:  {name: compact JWS}
    claims:  {"standard": the claims object used by the valid_* tokens}
"""
import base64
import hashlib
import hmac
import json
import os

import jwt  # PyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HERE = os.path.dirname(os.path.abspath(__file__))

IAT = 1_700_000_000
NBF = IAT + 60
EXP = IAT + 3600
NOW = IAT + 600

SECRET = "wavelane-current-secret-" + "0123456789abcdef" * 3  # 64 bytes (RFC 7518 §3.2 for HS512)
PREVIOUS = "wavelane-previous-secret-" + "fedcba9876543210" * 3
WRONG = "not-the-secret-" + "x" * 50


# Orders of P-256 and P-384 (by signature half size in bytes).
EC_ORDER = {
    32: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    48: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973,
}


def with_s(token, low):
    """The same ES token with its signature's s in the low (s <= n/2) or high form (s' = n - s)."""
    h, p, s = token.split(".")
    sig = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    half = len(sig) // 2
    n = EC_ORDER[half]
    value = int.from_bytes(sig[half:], "big")
    if (value > n // 2) == low:
        value = n - value
    return h + "." + p + "." + b64u(sig[:half] + value.to_bytes(half, "big"))


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def hs256_raw(header_bytes: bytes, payload_bytes: bytes, secret: bytes) -> str:
    """Hand-made HS256 JWS over arbitrary header/payload bytes."""
    signing_input = b64u(header_bytes) + "." + b64u(payload_bytes)
    sig = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64u(sig)


def pub_pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def main() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec256 = ec.generate_private_key(ec.SECP256R1())
    ec256_other = ec.generate_private_key(ec.SECP256R1())
    ec384 = ec.generate_private_key(ec.SECP384R1())
    ec_k1 = ec.generate_private_key(ec.SECP256K1())

    keys = {
        "rsa": pub_pem(rsa_key),
        "ec256": pub_pem(ec256),
        "ec384": pub_pem(ec384),
        "rsa_other": pub_pem(rsa_other),
        "ec256_other": pub_pem(ec256_other),
    }
    bad_keys = {
        "garbage": "hello, I am not a key",
        "truncated": keys["rsa"][: len(keys["rsa"]) // 2],
        "private_key": rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
        "rsa_pkcs1": rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ).decode("ascii"),
        "rsa_1024": pub_pem(rsa_small),
        "ec_secp256k1": pub_pem(ec_k1),
        "corrupted_base64": keys["ec256"].replace("MFkw", "M!kw", 1),
    }

    claims = {
        "sub": "user-42",
        "iss": "wavelane-test",
        "aud": "wavelane",
        "iat": IAT,
        "nbf": NBF,
        "exp": EXP,
        "name": "Zoë 😀 \"quoted\"",
        "roles": ["admin", "dev"],
    }
    secret = SECRET.encode()
    tokens = {}

    # Every algorithm, valid.
    tokens["valid_hs256"] = jwt.encode(claims, secret, algorithm="HS256")
    tokens["valid_hs384"] = jwt.encode(claims, secret, algorithm="HS384")
    tokens["valid_hs512"] = jwt.encode(claims, secret, algorithm="HS512")
    tokens["valid_rs256"] = jwt.encode(claims, rsa_key, algorithm="RS256")
    tokens["valid_rs384"] = jwt.encode(claims, rsa_key, algorithm="RS384")
    tokens["valid_rs512"] = jwt.encode(claims, rsa_key, algorithm="RS512")
    # PyJWT (OpenSSL) does not normalize S: the valid tokens get the low-S form the verifier
    # requires by default (jwt_reject_high_s), the high-S form of the same signature is kept too.
    for alg, key in (("ES256", ec256), ("ES384", ec384)):
        signed = jwt.encode(claims, key, algorithm=alg)
        tokens["valid_" + alg.lower()] = with_s(signed, low=True)
        tokens["high_s_" + alg.lower()] = with_s(signed, low=False)
    tokens["valid_hs256_kid"] = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "k1", "typ": "JWT"})
    tokens["previous_secret_hs256"] = jwt.encode(claims, PREVIOUS.encode(), algorithm="HS256")
    tokens["minimal_hs256"] = jwt.encode({}, secret, algorithm="HS256")
    tokens["no_sub_hs256"] = jwt.encode({"exp": EXP}, secret, algorithm="HS256")
    tokens["fractional_times_hs256"] = jwt.encode({"nbf": NBF + 0.5, "exp": EXP + 0.5}, secret, algorithm="HS256")

    # Bad signatures.
    tokens["wrong_secret_hs256"] = jwt.encode(claims, WRONG.encode(), algorithm="HS256")
    tokens["other_rsa_key_rs256"] = jwt.encode(claims, rsa_other, algorithm="RS256")
    tokens["other_ec_key_es256"] = jwt.encode(claims, ec256_other, algorithm="ES256")
    h, p, s = tokens["valid_hs256"].split(".")
    evil = dict(claims, sub="admin")
    tokens["tampered_payload_hs256"] = h + "." + b64u(compact_json(evil)) + "." + s
    h, p, s = tokens["valid_rs256"].split(".")
    tokens["tampered_payload_rs256"] = h + "." + b64u(compact_json(evil)) + "." + s
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[10] ^= 0x01
    tokens["tampered_signature_rs256"] = h + "." + p + "." + b64u(bytes(sig))
    h, p, s = tokens["valid_es256"].split(".")
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[5] ^= 0x80
    tokens["tampered_signature_es256"] = h + "." + p + "." + b64u(bytes(sig))
    tokens["truncated_signature_es256"] = h + "." + p + "." + b64u(bytes(sig[:63]))
    # ES256 signature in DER form instead of raw r||s: must be rejected (wrong length).
    from cryptography.hazmat.primitives import hashes
    der = ec256.sign((h + "." + p).encode("ascii"), ec.ECDSA(hashes.SHA256()))
    tokens["der_signature_es256"] = h + "." + p + "." + b64u(der)
    h, p, s = tokens["valid_hs256"].split(".")
    tokens["empty_signature_hs256"] = h + "." + p + "."

    # alg "none" in several spellings (unsigned, empty signature).
    for spelling in ("none", "None", "NONE", "nOnE"):
        tokens["alg_" + spelling] = (
            b64u(compact_json({"alg": spelling, "typ": "JWT"})) + "." + b64u(compact_json(claims)) + "."
        )
    tokens["alg_missing"] = hs256_raw(compact_json({"typ": "JWT"}), compact_json(claims), secret)
    tokens["alg_unknown"] = hs256_raw(compact_json({"alg": "XS256"}), compact_json(claims), secret)
    tokens["alg_lowercase_hs256"] = hs256_raw(compact_json({"alg": "hs256"}), compact_json(claims), secret)
    tokens["alg_not_string"] = hs256_raw(compact_json({"alg": 256}), compact_json(claims), secret)

    # Algorithm confusion: HS256 token whose HMAC key is the RSA / EC public key PEM text.
    # (PyJWT refuses to do this, so it is hand-made.)
    tokens["confusion_hs256_rsa_pem"] = hs256_raw(
        compact_json({"alg": "HS256", "typ": "JWT"}), compact_json(claims), keys["rsa"].encode("ascii")
    )
    tokens["confusion_hs256_ec_pem"] = hs256_raw(
        compact_json({"alg": "HS256", "typ": "JWT"}), compact_json(claims), keys["ec256"].encode("ascii")
    )

    # Claims: iss / aud variants.
    tokens["wrong_iss"] = jwt.encode(dict(claims, iss="someone-else"), secret, algorithm="HS256")
    no_iss = {k: v for k, v in claims.items() if k != "iss"}
    tokens["missing_iss"] = jwt.encode(no_iss, secret, algorithm="HS256")
    tokens["wrong_aud_string"] = jwt.encode(dict(claims, aud="other-service"), secret, algorithm="HS256")
    tokens["wrong_aud_array"] = jwt.encode(dict(claims, aud=["a", "b"]), secret, algorithm="HS256")
    tokens["aud_array_contains"] = jwt.encode(dict(claims, aud=["other", "wavelane"]), secret, algorithm="HS256")
    no_aud = {k: v for k, v in claims.items() if k != "aud"}
    tokens["missing_aud"] = jwt.encode(no_aud, secret, algorithm="HS256")
    no_exp = {k: v for k, v in claims.items() if k != "exp"}
    tokens["missing_exp"] = jwt.encode(no_exp, secret, algorithm="HS256")

    # Malformed (validly signed, so the failure is in parsing / claim types, not the signature).
    tokens["payload_array"] = hs256_raw(compact_json({"alg": "HS256", "typ": "JWT"}), b'["sub","x"]', secret)
    tokens["payload_not_json"] = hs256_raw(compact_json({"alg": "HS256", "typ": "JWT"}), b"sub=x", secret)
    tokens["payload_duplicate_key"] = hs256_raw(
        compact_json({"alg": "HS256"}), b'{"sub":"user-42","sub":"admin"}', secret
    )
    tokens["header_duplicate_alg"] = hs256_raw(b'{"alg":"none","alg":"HS256"}', compact_json(claims), secret)
    tokens["header_not_json"] = hs256_raw(b"alg=HS256", compact_json(claims), secret)
    tokens["header_array"] = hs256_raw(b'["HS256"]', compact_json(claims), secret)
    tokens["exp_string"] = hs256_raw(compact_json({"alg": "HS256"}), compact_json(dict(claims, exp=str(EXP))), secret)
    tokens["nbf_string"] = hs256_raw(compact_json({"alg": "HS256"}), compact_json(dict(claims, nbf="soon")), secret)
    tokens["sub_number"] = hs256_raw(compact_json({"alg": "HS256"}), compact_json(dict(claims, sub=42)), secret)
    tokens["aud_number"] = hs256_raw(compact_json({"alg": "HS256"}), compact_json(dict(claims, aud=7)), secret)
    tokens["crit_header"] = hs256_raw(
        compact_json({"alg": "HS256", "crit": ["exp"], "exp": EXP}), compact_json(claims), secret
    )
    # Oversize: validly signed but longer than 8 KiB; and one just below the limit that must verify.
    big = dict(claims, pad="x" * 6400)
    tokens["oversize_hs256"] = jwt.encode(big, secret, algorithm="HS256")
    assert len(tokens["oversize_hs256"]) > 8192
    base_len = len(jwt.encode(dict(claims, pad=""), secret, algorithm="HS256"))
    pad = (8192 - base_len) * 3 // 4
    while True:
        t = jwt.encode(dict(claims, pad="y" * pad), secret, algorithm="HS256")
        if len(t) <= 8192:
            break
        pad -= 1
    tokens["just_under_limit_hs256"] = t

    # Sanity: PyJWT itself accepts the valid ones.
    for name in ("valid_hs256", "valid_hs384", "valid_hs512"):
        jwt.decode(tokens[name], secret, algorithms=["HS256", "HS384", "HS512"], audience="wavelane",
                   options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    for name, key in (("valid_rs256", rsa_key), ("valid_es256", ec256), ("valid_es384", ec384)):
        jwt.decode(tokens[name], key.public_key(), algorithms=[name[-5:].upper()], audience="wavelane",
                   options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})

    fixtures = {
        "times": {"iat": IAT, "nbf": NBF, "exp": EXP, "now": NOW},
        "secrets": {"current": SECRET, "previous": PREVIOUS, "wrong": WRONG},
        "keys": keys,
        "bad_keys": bad_keys,
        "claims": {"standard": claims},
        "tokens": tokens,
    }
    path = os.path.join(HERE, "fixtures.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixtures, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path}: {len(tokens)} tokens, {len(keys)} keys, {len(bad_keys)} bad keys")


if __name__ == "__main__":
    main()
