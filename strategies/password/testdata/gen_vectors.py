#!/usr/bin/env python3
"""Writes testdata/vectors.json: password hashes made by the libraries of the systems whose
users authd imports, each with the password that matches it and the name of its generator.

Run once, from this folder, in a virtualenv with requirements.txt installed and `node` on the
PATH (for better-auth's format, see gen_better_auth.js):

    python3 -m venv /tmp/vectors && /tmp/vectors/bin/pip install -r requirements.txt
    /tmp/vectors/bin/python gen_vectors.py > vectors.json

Costs are kept small (the unit tests verify every vector), except where a vector stands for
a library's defaults. Every vector is checked by its own library before it is written.
"""

import base64
import hashlib
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import unicodedata

import argon2
import bcrypt
import django
from django.conf import settings

settings.configure(PASSWORD_HASHERS=[])
from django.contrib.auth import hashers as django_hashers  # noqa: E402
from passlib import hash as passlib_hash  # noqa: E402

# ASCII, Latin-1 range (two UTF-8 bytes), and characters that NFKC changes (a ligature and
# the Angstrom sign), so that normalization is exercised where a format applies it.
PASSWORDS = ["correct horse battery staple", "pässwörd", "\ufb01le \u212b 東京"]

VECTORS = []


def v(fmt, password, stored, generator, note=None):
    entry = {"format": fmt, "password": password, "hash": stored, "generator": generator}
    if note:
        entry["note"] = note
    VECTORS.append(entry)


def version(pkg):
    return f"{pkg} {md.version(pkg)}"


def b64(raw):
    """PHC's B64: standard alphabet, no padding."""
    return base64.b64encode(raw).decode().rstrip("=")


def argon2_vectors():
    gen = f"{version('argon2-cffi')} (libargon2 via argon2-cffi-bindings {md.version('argon2-cffi-bindings')})"
    low = argon2.low_level
    kinds = {"argon2id": low.Type.ID, "argon2i": low.Type.I, "argon2d": low.Type.D}
    for name, ty in kinds.items():
        for ver in (19, 16):
            for pw in PASSWORDS[:2]:
                stored = low.hash_secret(
                    pw.encode(), os.urandom(16), time_cost=2, memory_cost=256,
                    parallelism=2, hash_len=32, type=ty, version=ver,
                ).decode()
                assert low.verify_secret(stored.encode(), pw.encode(), ty)
                v(name, pw, stored, gen + f".low_level.hash_secret, version={ver}")
    # A 16-byte output and an 8-byte salt: the smallest sizes authd accepts.
    stored = low.hash_secret(
        PASSWORDS[2].encode(), os.urandom(8), time_cost=1, memory_cost=64, parallelism=1,
        hash_len=16, type=low.Type.ID, version=19,
    ).decode()
    assert low.verify_secret(stored.encode(), PASSWORDS[2].encode(), low.Type.ID)
    v("argon2id", PASSWORDS[2], stored, gen + ".low_level.hash_secret")
    # argon2-cffi's own defaults (RFC 9106 low-memory: m=64 MiB, t=3, p=4).
    ph = argon2.PasswordHasher()
    stored = ph.hash(PASSWORDS[0])
    assert ph.verify(stored, PASSWORDS[0])
    v("argon2id", PASSWORDS[0], stored, gen + ".PasswordHasher() defaults")


def bcrypt_vectors():
    gen = version("bcrypt")
    for prefix in (b"2b", b"2a"):
        for pw in PASSWORDS:
            stored = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4, prefix=prefix))
            assert bcrypt.checkpw(pw.encode(), stored)
            v("bcrypt", pw, stored.decode(), gen + f".hashpw, gensalt(rounds=4, prefix={prefix.decode()})")
    # bcrypt hashes `$2y$` salts as `$2b$` ones and keeps the prefix.
    salt = bcrypt.gensalt(rounds=5).replace(b"$2b$", b"$2y$", 1)
    stored = bcrypt.hashpw(PASSWORDS[1].encode(), salt)
    assert stored.startswith(b"$2y$") and bcrypt.checkpw(PASSWORDS[1].encode(), stored)
    v("bcrypt", PASSWORDS[1], stored.decode(), gen + ".hashpw, a $2y$ salt")
    # Exactly 72 bytes: the longest password bcrypt uses whole.
    pw = "x" * 70 + "é"
    stored = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4))
    assert len(pw.encode()) == 72 and bcrypt.checkpw(pw.encode(), stored)
    v("bcrypt", pw, stored.decode(), gen + ".hashpw, a 72-byte password")


def scrypt_vectors():
    gen = version("passlib") + " passlib.hash.scrypt (hashlib.scrypt backend)"
    for pw in PASSWORDS:
        h = passlib_hash.scrypt.using(rounds=10, block_size=8, parallelism=1)
        stored = h.hash(pw)
        assert h.verify(pw, stored)
        v("scrypt", pw, stored, gen)
    # The same PHC form as RustCrypto's scrypt crate (and authd) writes, at other r and p.
    gen = f"Python {platform.python_version()} hashlib.scrypt, PHC B64"
    for pw, (ln, r, p, n) in zip(PASSWORDS, [(10, 8, 1, 32), (11, 4, 2, 64), (8, 16, 1, 16)]):
        salt = os.urandom(16)
        out = hashlib.scrypt(pw.encode(), salt=salt, n=1 << ln, r=r, p=p, dklen=n)
        v("scrypt", pw, f"$scrypt$ln={ln},r={r},p={p}${b64(salt)}${b64(out)}", gen)


def better_auth_vectors():
    here = os.path.dirname(os.path.abspath(__file__))
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    gen = f"Node {node.stdout.strip()} crypto.scryptSync as better-auth calls it (gen_better_auth.js)"
    res = subprocess.run(
        ["node", os.path.join(here, "gen_better_auth.js")],
        input=json.dumps(PASSWORDS), capture_output=True, text=True, check=True,
    )
    for item in json.loads(res.stdout):
        # Cross-check with Python: the salt is the hex text itself, the password NFKC.
        salt, key = item["hash"].split(":")
        pw = unicodedata.normalize("NFKC", item["password"]).encode()
        again = hashlib.scrypt(pw, salt=salt.encode(), n=16384, r=16, p=1, dklen=64, maxmem=64 << 20)
        assert again.hex() == key
        v("better-auth-scrypt", item["password"], item["hash"], gen)


def django_vectors():
    gen = f"Django {django.get_version()} django.contrib.auth.hashers"
    for cls, fmt in (
        (django_hashers.PBKDF2PasswordHasher, "django-pbkdf2-sha256"),
        (django_hashers.PBKDF2SHA1PasswordHasher, "django-pbkdf2-sha1"),
    ):
        hasher = cls()
        for pw in PASSWORDS:
            stored = hasher.encode(pw, hasher.salt(), iterations=1000)
            assert hasher.verify(pw, stored)
            v(fmt, pw, stored, gen + f".{cls.__name__}.encode, iterations=1000")
    hasher = django_hashers.PBKDF2PasswordHasher()
    stored = hasher.encode(PASSWORDS[0], hasher.salt())
    assert hasher.verify(PASSWORDS[0], stored)
    v("django-pbkdf2-sha256", PASSWORDS[0], stored, gen + ".PBKDF2PasswordHasher defaults")


def pbkdf2_phc_vectors():
    gen = f"Python {platform.python_version()} hashlib.pbkdf2_hmac, PHC B64 (the RustCrypto pbkdf2 crate's and Kratos' form)"
    for pw, (name, digest, n) in zip(
        PASSWORDS, [("pbkdf2-sha256", "sha256", 32), ("pbkdf2-sha512", "sha512", 64), ("pbkdf2", "sha1", 20)]
    ):
        for it in (1000, 2000):
            salt = os.urandom(16)
            out = hashlib.pbkdf2_hmac(digest, pw.encode(), salt, it, dklen=n)
            fmt = {"pbkdf2": "pbkdf2-sha1"}.get(name, name)
            v(fmt, pw, f"${name}$i={it},l={n}${b64(salt)}${b64(out)}", gen)
    # A key longer than the digest (two PBKDF2 blocks).
    salt = os.urandom(16)
    out = hashlib.pbkdf2_hmac("sha256", PASSWORDS[1].encode(), salt, 1000, dklen=48)
    v("pbkdf2-sha256", PASSWORDS[1], f"$pbkdf2-sha256$i=1000,l=48${b64(salt)}${b64(out)}", gen)


def passlib_vectors():
    gen = version("passlib") + " passlib.hash"
    for cls, fmt in (
        (passlib_hash.pbkdf2_sha256, "passlib-pbkdf2-sha256"),
        (passlib_hash.pbkdf2_sha512, "passlib-pbkdf2-sha512"),
        (passlib_hash.pbkdf2_sha1, "passlib-pbkdf2-sha1"),
    ):
        for pw in PASSWORDS:
            h = cls.using(rounds=1000)
            stored = h.hash(pw)
            assert h.verify(pw, stored)
            v(fmt, pw, stored, gen + f".{cls.name}.using(rounds=1000)")


def main():
    argon2_vectors()
    bcrypt_vectors()
    scrypt_vectors()
    better_auth_vectors()
    django_vectors()
    pbkdf2_phc_vectors()
    passlib_vectors()
    doc = {
        "about": "Made by gen_vectors.py (and gen_better_auth.js); each vector names its generator. "
        "`password` is UTF-8 text; `hash` verifies with it and with no other password.",
        "vectors": VECTORS,
    }
    json.dump(doc, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
