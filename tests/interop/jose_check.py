#!/usr/bin/env python3
"""An independent JOSE implementation for Vidne's interoperability tests.

Uses only the `cryptography` package: no JOSE library. It shares nothing with the Rust
code (jsonwebtoken signs, josekit encrypts and verifies there).

    jose_check.py verify --jwks JWKS.json [--decrypt-key KEY.pem] < TOKEN
        Decrypts a compact JWE (RSA-OAEP-256 or ECDH-ES+A256KW, with A256GCM; the
        Concat KDF of RFC 7518 section 4.6.2 and AES key unwrap of RFC 3394) if the
        token is one, verifies the nested compact JWS (EdDSA or ES256) with the JWKS key
        its kid names, and prints {"jwe_header", "header", "claims"} as JSON.

    jose_check.py sign --key KEY.pem --kid KID [--typ TYP] < CLAIMS.json
        Signs the claims as a compact JWS with an Ed25519 (EdDSA) or P-256 (ES256)
        PKCS#8 private key, and prints it.

Exits 1 with the reason on stderr when a check fails.
"""

import argparse
import base64
import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap


class Refused(Exception):
    pass


def b64d(s: str) -> bytes:
    if "=" in s or any(c in s for c in "+/"):
        raise Refused("not base64url without padding")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def concat_kdf(z: bytes, alg: str, apu: bytes, apv: bytes, keydatalen_bits: int) -> bytes:
    """RFC 7518 section 4.6.2 (NIST SP 800-56A Concat KDF with SHA-256)."""

    def with_len(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    other_info = (
        with_len(alg.encode("ascii"))
        + with_len(apu)
        + with_len(apv)
        + struct.pack(">I", keydatalen_bits)
    )
    out = b""
    counter = 1
    while len(out) * 8 < keydatalen_bits:
        out += hashlib.sha256(struct.pack(">I", counter) + z + other_info).digest()
        counter += 1
    return out[: keydatalen_bits // 8]


def decrypt(token: str, key_pem: bytes):
    parts = token.split(".")
    protected, ek, iv, ct, tag = parts
    header = json.loads(b64d(protected))
    if header.get("enc") != "A256GCM":
        raise Refused(f"enc {header.get('enc')!r} is not A256GCM")
    if header.get("cty") != "JWT":
        raise Refused(f"cty {header.get('cty')!r} is not JWT")
    private = serialization.load_pem_private_key(key_pem, password=None)
    alg = header.get("alg")
    if alg == "RSA-OAEP-256":
        if not isinstance(private, rsa.RSAPrivateKey):
            raise Refused("RSA-OAEP-256 needs an RSA key")
        cek = private.decrypt(
            b64d(ek),
            padding.OAEP(
                mgf=padding.MGF1(algorithm=hashes.SHA256()),
                algorithm=hashes.SHA256(),
                label=None,
            ),
        )
    elif alg == "ECDH-ES+A256KW":
        if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
            raise Refused("ECDH-ES+A256KW needs a P-256 key")
        epk = header["epk"]
        if epk.get("kty") != "EC" or epk.get("crv") != "P-256":
            raise Refused("epk is not an EC P-256 key")
        peer = ec.EllipticCurvePublicNumbers(
            int.from_bytes(b64d(epk["x"]), "big"),
            int.from_bytes(b64d(epk["y"]), "big"),
            ec.SECP256R1(),
        ).public_key()
        z = private.exchange(ec.ECDH(), peer)
        apu = b64d(header["apu"]) if "apu" in header else b""
        apv = b64d(header["apv"]) if "apv" in header else b""
        kek = concat_kdf(z, alg, apu, apv, 256)
        cek = aes_key_unwrap(kek, b64d(ek))
    else:
        raise Refused(f"JWE alg {alg!r} is not supported")
    try:
        plain = AESGCM(cek).decrypt(b64d(iv), b64d(ct) + b64d(tag), protected.encode("ascii"))
    except InvalidTag:
        raise Refused("A256GCM authentication failed")
    return header, plain.decode("ascii")


def verify_jws(token: str, jwks: dict):
    protected, payload, signature = token.split(".")
    header = json.loads(b64d(protected))
    alg = header.get("alg")
    kid = header.get("kid")
    matches = [k for k in jwks.get("keys", []) if k.get("kid") == kid]
    if len(matches) != 1:
        raise Refused(f"kid {kid!r} names {len(matches)} JWKS keys")
    jwk = matches[0]
    if jwk.get("alg") not in (None, alg):
        raise Refused(f"key {kid} is for {jwk.get('alg')}, token is {alg}")
    signed = f"{protected}.{payload}".encode("ascii")
    sig = b64d(signature)
    try:
        if alg == "EdDSA":
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise Refused("EdDSA needs an OKP Ed25519 key")
            ed25519.Ed25519PublicKey.from_public_bytes(b64d(jwk["x"])).verify(sig, signed)
        elif alg == "ES256":
            if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
                raise Refused("ES256 needs an EC P-256 key")
            if len(sig) != 64:
                raise Refused("an ES256 signature is 64 bytes (r || s)")
            public = ec.EllipticCurvePublicNumbers(
                int.from_bytes(b64d(jwk["x"]), "big"),
                int.from_bytes(b64d(jwk["y"]), "big"),
                ec.SECP256R1(),
            ).public_key()
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            public.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        else:
            raise Refused(f"JWS alg {alg!r} is not supported")
    except InvalidSignature:
        raise Refused("signature does not verify")
    return header, json.loads(b64d(payload))


def cmd_verify(args) -> int:
    token = sys.stdin.read().strip()
    with open(args.jwks, "rb") as f:
        jwks = json.load(f)
    jwe_header = None
    parts = token.count(".") + 1
    if parts == 5:
        if not args.decrypt_key:
            raise Refused("the token is a JWE: give --decrypt-key")
        with open(args.decrypt_key, "rb") as f:
            jwe_header, token = decrypt(token, f.read())
    elif parts != 3:
        raise Refused(f"{parts} parts: neither a JWS nor a JWE")
    header, claims = verify_jws(token, jwks)
    print(json.dumps({"jwe_header": jwe_header, "header": header, "claims": claims}))
    return 0


def cmd_sign(args) -> int:
    claims = json.loads(sys.stdin.read())
    with open(args.key, "rb") as f:
        private = serialization.load_pem_private_key(f.read(), password=None)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        alg = "EdDSA"
    elif isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1":
        alg = "ES256"
    else:
        raise Refused("the key is neither Ed25519 nor P-256")
    header = {"alg": alg, "kid": args.kid, "typ": args.typ}
    signed = b64e(json.dumps(header).encode()) + "." + b64e(json.dumps(claims).encode())
    if alg == "EdDSA":
        sig = private.sign(signed.encode("ascii"))
    else:
        r, s = decode_dss_signature(private.sign(signed.encode("ascii"), ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    print(signed + "." + b64e(sig))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--jwks", required=True)
    v.add_argument("--decrypt-key")
    s = sub.add_parser("sign")
    s.add_argument("--key", required=True)
    s.add_argument("--kid", required=True)
    s.add_argument("--typ", default="vidne-transaction-token+jwt")
    args = parser.parse_args()
    try:
        return cmd_verify(args) if args.command == "verify" else cmd_sign(args)
    except (Refused, ValueError, KeyError) as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
