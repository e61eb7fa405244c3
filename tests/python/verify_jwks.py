"""Verifies an authd token the way a service behind authd would: PyJWT's PyJWKClient fetches
the JWKS over HTTP, picks the key by the token's `kid`, and jwt.decode checks the signature,
`exp`, `iss` and (when given) `aud`.

Usage: verify_jwks.py JWKS_URL ISSUER AUDIENCE|- TOKEN...
Prints one JSON line per token: {"ok": true, "kid": ..., "claims": {...}} or
{"ok": false, "error": "..."}. Exits 0 when every token was handled (good or not), 2 on misuse.
"""

import json
import sys

import jwt
from jwt import PyJWKClient


def main() -> int:
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    url, issuer, audience, tokens = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    # No cache of keys between tokens: each token makes the client fetch the JWKS anew, as a
    # service whose cache has expired would.
    for token in tokens:
        client = PyJWKClient(url, cache_keys=False, cache_jwk_set=False)
        try:
            key = client.get_signing_key_from_jwt(token)
            options = {"require": ["exp", "iat", "iss", "sub"]}
            kwargs = {"issuer": issuer}
            if audience != "-":
                kwargs["audience"] = audience
            else:
                options["verify_aud"] = False
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["EdDSA", "ES256", "RS256"],
                options=options,
                **kwargs,
            )
            header = jwt.get_unverified_header(token)
            print(json.dumps({"ok": True, "kid": header.get("kid"), "claims": claims}))
        except Exception as e:  # every failure is an answer, printed for the Rust test
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
