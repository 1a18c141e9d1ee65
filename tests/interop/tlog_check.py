#!/usr/bin/env python3
"""An independent tlog-tiles client for Vidne's interoperability tests.

Written from the public specifications alone; it shares nothing with the Rust code.
Uses the Python standard library and the `cryptography` package (for Ed25519).

    tlog_check.py --vkey VKEY [--bearer KEY] [--old-checkpoint FILE] BASE_URL

VKEY is the log's verifier key, `<name>+<key id hex>+<base64(0x01 || public key)>`
(golang.org/x/mod/sumdb/note). The bearer key may also come from $TLOG_BEARER.

It checks, against the specifications named:
  * the verifier key: type byte 0x01 (Ed25519), and its key id is the first four bytes
    of SHA-256(name || 0x0A || 0x01 || public key) (C2SP signed-note);
  * `<base>/checkpoint`: a signed note (C2SP signed-note) carrying a valid Ed25519
    signature by that key over its text, whose text is a checkpoint (C2SP
    tlog-checkpoint) of the key's origin: origin, tree size, base64 root hash;
  * the whole log, mirrored as a tlog-tiles client does (C2SP tlog-tiles): every
    level-0 hash tile and entry bundle the checkpoint's size requires, full and
    partial, and every higher-level hash tile it requires;
  * every entry of every bundle hashes, as SHA-256(0x00 || entry), to its hash in the
    level-0 tile (RFC 6962 section 2.1);
  * every entry is RFC 8785 canonical JSON, an object whose `seq` is its index
    (Vidne SPEC sections 1 and 2);
  * every hash of a level-L tile (L >= 1) is the RFC 6962 Merkle Tree Hash of the full
    tile below it;
  * the RFC 6962 Merkle Tree Hash of the checkpoint's size, recomputed from the tiles
    alone, is the checkpoint's root;
  * with --old-checkpoint: that checkpoint also verifies, its size is not above the
    new one, and its root is the tree hash of the same tiles at its size (the log only
    grew).

Prints a one-line JSON summary and exits 0 when every check holds:
{"ok": true, "origin", "tree_size", "root" (base64), "tiles" (hash tiles fetched, all
levels), "bundles", "entries", "old_tree_size" (with --old-checkpoint)}. Exits 1 with
the reason on stderr when a check fails; 2 on a usage or network error (an HTTP 401 or
403 included: nothing was checked).
"""

import argparse
import base64
import binascii
import gzip
import hashlib
import json
import os
import struct
import sys
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

TILE_WIDTH = 256
HASH_SIZE = 32
ED25519_TYPE = 0x01
EM_DASH_SPACE = "\u2014 "
MAX_SAFE_INTEGER = 2**53 - 1


class Refused(Exception):
    """A check failed: the log is not what the specifications say (exit 1)."""


class Unusable(Exception):
    """The inputs or the network failed us: nothing was checked (exit 2)."""


# --- Hashing (RFC 6962 section 2.1) -----------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(entry: bytes) -> bytes:
    return sha256(b"\x00" + entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 6962's MTH: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_tree_hash(hashes: list) -> bytes:
    """RFC 6962 MTH over already-hashed leaves (at least one)."""
    if len(hashes) == 1:
        return hashes[0]
    k = largest_power_of_two_below(len(hashes))
    return node_hash(merkle_tree_hash(hashes[:k]), merkle_tree_hash(hashes[k:]))


# --- Base64 (RFC 4648 section 4, as the C2SP specs use it) ---------------------------


def b64decode(text: str, what: str) -> bytes:
    """Standard base64 with padding, strictly: no other spelling of the same bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(f"{what} is not standard base64")
    if base64.b64encode(raw).decode("ascii") != text:
        raise Refused(f"{what} is not canonical standard base64")
    return raw


# --- Verifier key and signed note (C2SP signed-note) ---------------------------------


class VerifierKey:
    def __init__(self, name: str, key_id: bytes, public: ed25519.Ed25519PublicKey, text: str):
        self.name = name
        self.key_id = key_id
        self.public = public
        self.text = text


def key_id(name: str, type_and_key: bytes) -> bytes:
    return sha256(name.encode("utf-8") + b"\n" + type_and_key)[:4]


def parse_verifier_key(text: str) -> VerifierKey:
    parts = text.strip().split("+", 2)  # the base64 key may itself hold a "+"
    if len(parts) != 3:
        raise Unusable("a verifier key is <name>+<key id hex>+<base64 key>")
    name, id_hex, key_b64 = parts
    if not name or any(c.isspace() for c in name):
        raise Unusable("the verifier key's name is empty or holds a space")
    if len(id_hex) != 8 or any(c not in "0123456789abcdef" for c in id_hex):
        raise Unusable("the verifier key's id is not 8 lowercase hex digits")
    try:
        type_and_key = b64decode(key_b64, "the verifier key")
    except Refused as e:
        raise Unusable(str(e))
    if len(type_and_key) != 33 or type_and_key[0] != ED25519_TYPE:
        raise Unusable("the verifier key is not 0x01 (Ed25519) and a 32-byte public key")
    if key_id(name, type_and_key).hex() != id_hex:
        raise Unusable(f"the verifier key's id {id_hex} is not SHA-256(name, 0x0A, key)[:4]")
    public = ed25519.Ed25519PublicKey.from_public_bytes(type_and_key[1:])
    return VerifierKey(name, bytes.fromhex(id_hex), public, text.strip())


def split_note(note: bytes):
    """(text, [(name, signature bytes)]): the text ends in a newline and is separated
    from the signature lines by the last blank line."""
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the note is not UTF-8")
    if any(ord(c) < 0x20 and c != "\n" for c in decoded):
        raise Refused("the note holds a control character other than newline")
    body, sep, signatures = decoded.rpartition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise Refused("the note is not text, a blank line, and signature lines")
    lines = []
    for line in signatures[:-1].split("\n"):
        if not line.startswith(EM_DASH_SPACE):
            raise Refused(f"signature line {line!r} does not start with an em dash and a space")
        name, space, sig_b64 = line[len(EM_DASH_SPACE):].partition(" ")
        if not space or not name or " " in sig_b64:
            raise Refused(f"signature line {line!r} is not '\u2014 <name> <base64>'")
        sig = b64decode(sig_b64, f"the signature of {name}")
        if len(sig) < 5:
            raise Refused(f"the signature of {name} is shorter than a key id")
        lines.append((name, sig))
    return body + "\n", lines


def verify_note(note: bytes, key: VerifierKey) -> str:
    """The note's text, if a signature by `key` over it verifies. Signatures by other
    keys (another name or key id) are ignored, as the spec requires."""
    text, signatures = split_note(note)
    verified = 0
    for name, sig in signatures:
        if name != key.name or sig[:4] != key.key_id:
            continue
        try:
            key.public.verify(sig[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise Refused(f"the signature by {key.name}+{key.key_id.hex()} does not verify")
        verified += 1
    if not verified:
        named = f"{key.name}+{key.key_id.hex()}"
        raise Refused(f"the note carries no signature by the verifier key {named}")
    return text


# --- Checkpoint (C2SP tlog-checkpoint) -----------------------------------------------


class Checkpoint:
    def __init__(self, origin: str, size: int, root: bytes):
        self.origin = origin
        self.size = size
        self.root = root


def parse_checkpoint(text: str, key: VerifierKey) -> Checkpoint:
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise Refused("a checkpoint's text is at least three non-empty lines")
    origin, size_text, root_b64 = lines[:3]
    if origin != key.name:
        raise Refused(f"the checkpoint's origin {origin!r} is not the key's name {key.name!r}")
    leading_zero = size_text != "0" and size_text.startswith("0")
    if not size_text.isascii() or not size_text.isdigit() or leading_zero:
        raise Refused(f"tree size {size_text!r} is not a decimal without leading zeroes")
    root = b64decode(root_b64, "the root hash")
    if len(root) != HASH_SIZE:
        raise Refused(f"the root hash is {len(root)} bytes, not {HASH_SIZE}")
    return Checkpoint(origin, int(size_text), root)


def verified_checkpoint(note: bytes, key: VerifierKey) -> Checkpoint:
    return parse_checkpoint(verify_note(note, key), key)


# --- Fetching (C2SP tlog-tiles) ------------------------------------------------------


class Log:
    """GETs resources under the log's URL prefix."""

    def __init__(self, base: str, bearer):
        self.base = base.rstrip("/")
        self.bearer = bearer

    def get(self, path: str, content_type: str) -> bytes:
        request = urllib.request.Request(f"{self.base}/{path}")
        request.add_header("Accept-Encoding", "gzip, identity")
        if self.bearer:
            request.add_header("Authorization", f"Bearer {self.bearer}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = response.read()
                encoding = response.headers.get("Content-Encoding", "identity")
                served_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise Unusable(f"GET {path}: HTTP {e.code} (is the bearer key right?)")
            raise Refused(f"the log does not serve {path} (HTTP {e.code})")
        except (urllib.error.URLError, OSError) as e:
            raise Unusable(f"GET {path}: {e}")
        if media_type(served_type) != media_type(content_type):
            raise Refused(f"{path} is served as {served_type!r}, not {content_type!r}")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding != "identity":
            raise Refused(f"{path} is served with Content-Encoding {encoding!r}")
        return body


def media_type(header: str) -> list:
    """A Content-Type's parts, lower case, without white space: comparable."""
    return [part.strip().lower() for part in header.split(";")]


def index_path(n: int) -> str:
    """Tile index n as zero-padded 3-digit elements, all but the last `x`-prefixed."""
    elements = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        elements.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(elements))


def tile_path(kind, n: int, width: int) -> str:
    """`tile/<L>/<N>[.p/<W>]`, or `tile/entries/<N>[.p/<W>]` for kind "entries"."""
    partial = f".p/{width}" if width < TILE_WIDTH else ""
    return f"tile/{kind}/{index_path(n)}{partial}"


def tiles_at(level: int, size: int) -> list:
    """(index, width) of every tile of `level` a tree of `size` requires: its full
    tiles, then the partial one of floor(size / 256**level) mod 256 hashes, if any."""
    full = size // TILE_WIDTH ** (level + 1)
    partial = (size // TILE_WIDTH**level) % TILE_WIDTH
    return [(n, TILE_WIDTH) for n in range(full)] + ([(full, partial)] if partial else [])


def levels(size: int) -> range:
    """The levels holding at least one hash for a tree of `size`."""
    level = 0
    while size // TILE_WIDTH**level:
        level += 1
    return range(level)


def split_tile(data: bytes, width: int, path: str) -> list:
    if len(data) != width * HASH_SIZE:
        raise Refused(f"{path} is {len(data)} bytes, not {width} hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def split_bundle(data: bytes, width: int, path: str) -> list:
    """A bundle's entries, each after its big-endian uint16 length."""
    entries, at = [], 0
    while at < len(data):
        if at + 2 > len(data):
            raise Refused(f"{path} ends inside a length prefix")
        (length,) = struct.unpack(">H", data[at : at + 2])
        at += 2
        if at + length > len(data):
            raise Refused(f"{path} ends inside an entry")
        entries.append(data[at : at + length])
        at += length
    if len(entries) != width:
        raise Refused(f"{path} holds {len(entries)} entries, not {width}")
    return entries


# --- Canonical JSON (RFC 8785) -------------------------------------------------------

SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def jcs_string(s: str) -> str:
    """RFC 8785 section 3.2.2.2: escape only the quote, backslash and controls."""
    out = []
    for c in s:
        if c in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[c])
        elif ord(c) < 0x20:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def jcs(value) -> str:
    """RFC 8785 serialization of JSON without floats: members sorted by their names'
    UTF-16 code units, no white space."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise Refused(f"integer {value} is beyond what an RFC 8785 number holds exactly")
        return str(value)
    if isinstance(value, str):
        return jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        names = sorted(value, key=lambda name: name.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(jcs_string(n) + ":" + jcs(value[n]) for n in names) + "}"
    raise Refused(f"a {type(value).__name__} in a record")


def no_float(text: str):
    raise Refused(f"number {text} is not an integer")


def no_duplicates(pairs: list) -> dict:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise Refused("an object repeats a member name")
    return dict(pairs)


def check_record(entry: bytes, seq: int):
    """The entry is RFC 8785 canonical JSON, an object whose `seq` is `seq`."""
    try:
        record = json.loads(
            entry.decode("utf-8"),
            parse_float=no_float,
            parse_constant=no_float,
            object_pairs_hook=no_duplicates,
        )
        canonical = jcs(record).encode("utf-8")
    except (UnicodeError, ValueError) as e:
        raise Refused(f"entry {seq} is not UTF-8 JSON: {e}")
    except Refused as e:
        raise Refused(f"entry {seq}: {e}")
    if canonical != entry:
        raise Refused(f"entry {seq} is not RFC 8785 canonical JSON")
    if not isinstance(record, dict) or type(record.get("seq")) is not int or record["seq"] != seq:
        raise Refused(f"entry {seq} is not a record whose seq is {seq}")


# --- Mirroring and checking the tree -------------------------------------------------


class Mirror:
    """Every tile a checkpoint's size requires: tiles[level][index] = [hash]."""

    def __init__(self, size: int):
        self.size = size
        self.tiles = {}
        self.bundles = 0
        self.entries = 0

    def hash_at(self, level: int, i: int) -> bytes:
        """The i-th hash of `level` (the MTH of leaves i * 256**level and on)."""
        return self.tiles[level][i // TILE_WIDTH][i % TILE_WIDTH]

    def tile_count(self) -> int:
        return sum(len(t) for t in self.tiles.values())


def mirror(log: Log, size: int) -> Mirror:
    m = Mirror(size)
    for level in levels(size):
        m.tiles[level] = {}
        for n, width in tiles_at(level, size):
            path = tile_path(level, n, width)
            m.tiles[level][n] = split_tile(log.get(path, "application/octet-stream"), width, path)
    for n, width in tiles_at(0, size):
        check_bundle(log, m, n, width)
    for level in levels(size)[1:]:
        check_level(m, level)
    return m


def check_bundle(log: Log, m: Mirror, n: int, width: int):
    """Each entry of bundle n hashes to its level-0 hash and is the record at its index."""
    path = tile_path("entries", n, width)
    entries = split_bundle(log.get(path, "application/octet-stream"), width, path)
    for i, entry in enumerate(entries):
        seq = n * TILE_WIDTH + i
        if leaf_hash(entry) != m.tiles[0][n][i]:
            raise Refused(f"entry {seq} in {path} does not hash to its level-0 tile hash")
        check_record(entry, seq)
    m.bundles += 1
    m.entries += len(entries)


def check_level(m: Mirror, level: int):
    """Each hash of a level-L tile is the Merkle Tree Hash of the full tile below."""
    for n, hashes in m.tiles[level].items():
        for i, h in enumerate(hashes):
            below = m.tiles[level - 1].get(n * TILE_WIDTH + i)
            if below is None or len(below) != TILE_WIDTH:
                raise Refused(f"level {level} tile {n} hash {i} has no full tile below it")
            if merkle_tree_hash(below) != h:
                raise Refused(f"level {level} tile {n} hash {i} is not the hash of the tile below")


def subtree_hash(m: Mirror, start: int, size: int) -> bytes:
    """RFC 6962 MTH(D[start : start + size]), taking a complete aligned subtree of
    256**L leaves from level L's tiles rather than hashing it up again."""
    for level in reversed(m.tiles):
        span = TILE_WIDTH**level
        if size == span and start % span == 0:
            return m.hash_at(level, start // span)
    k = largest_power_of_two_below(size)
    return node_hash(subtree_hash(m, start, k), subtree_hash(m, start + k, size - k))


def tree_hash(m: Mirror, size: int) -> bytes:
    """The root of the tree of the first `size` entries; SHA-256("") when empty."""
    if size > m.size:
        raise Refused(f"tree size {size} is beyond the mirrored {m.size}")
    return subtree_hash(m, 0, size) if size else sha256(b"")


# --- The command ---------------------------------------------------------------------


def check(args) -> dict:
    key = parse_verifier_key(args.vkey)
    log = Log(args.base_url, args.bearer)
    new = verified_checkpoint(log.get("checkpoint", "text/plain; charset=utf-8"), key)
    m = mirror(log, new.size)
    if tree_hash(m, new.size) != new.root:
        raise Refused(f"the root of the tiles at size {new.size} is not the checkpoint's root")
    summary = {
        "ok": True,
        "origin": new.origin,
        "tree_size": new.size,
        "root": base64.b64encode(new.root).decode("ascii"),
        "tiles": m.tile_count(),
        "bundles": m.bundles,
        "entries": m.entries,
    }
    if args.old_checkpoint:
        summary["old_tree_size"] = check_old(args.old_checkpoint, key, m)
    return summary


def check_old(path: str, key: VerifierKey, m: Mirror) -> int:
    """The older checkpoint verifies and is a prefix of the mirrored log."""
    try:
        with open(path, "rb") as f:
            note = f.read()
    except OSError as e:
        raise Unusable(f"cannot read {path}: {e}")
    old = verified_checkpoint(note, key)
    if old.size > m.size:
        raise Refused(f"the log shrank: the old checkpoint's size is {old.size}, the new {m.size}")
    if tree_hash(m, old.size) != old.root:
        raise Refused(f"a fork: the old root is not that of the log's first {old.size} entries")
    return old.size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="the log's URL prefix, e.g. http://127.0.0.1:8080")
    parser.add_argument("--vkey", required=True, help="the verifier key, <name>+<id>+<base64>")
    parser.add_argument(
        "--bearer", default=os.environ.get("TLOG_BEARER"), help="an API key (default: $TLOG_BEARER)"
    )
    parser.add_argument("--old-checkpoint", help="an earlier checkpoint the log must extend")
    args = parser.parse_args()
    try:
        print(json.dumps(check(args), separators=(",", ":")))
        return 0
    except Refused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    except Unusable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
