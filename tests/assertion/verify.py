"""Verifies one X-DingTalk-Assertion with PyJWT, independently of the proxy's own code.

Usage: verify.py JWKS_URL ISSUER AUDIENCE [NOW] < token

Fetches the JWKS over HTTP (PyJWKClient), picks the key by the token's `kid`, and checks the
ES256 signature, `iss`, `aud`, `exp` and `iat` (leeway 0), requiring every claim the proxy
promises. NOW (Unix seconds) judges the time claims at that moment instead of the real clock,
so a test can ask about a token "after exp" without sleeping. Prints the claims as JSON and
exits 0, or prints `REJECTED <error class>: <message>` and exits 1.
"""

import json
import sys
from datetime import datetime, timezone

import jwt


def main() -> int:
    jwks_url, issuer, audience = sys.argv[1:4]
    if len(sys.argv) > 4:
        at = datetime.fromtimestamp(int(sys.argv[4]), tz=timezone.utc)

        class Frozen(datetime):
            @classmethod
            def now(cls, tz=None):
                return at

        jwt.api_jwt.datetime = Frozen
    token = sys.stdin.read().strip()
    try:
        key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=audience,
            issuer=issuer,
            leeway=0,
            options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]},
        )
    except Exception as e:  # every failure is a rejection, named
        print(f"REJECTED {type(e).__name__}: {e}")
        return 1
    print(json.dumps(claims, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
