#!/usr/bin/env bash
# Regenerates the test-only RS256 key pair used by the jwt-authorizer server
# (private key signs the benchmark's JWTs; jwks.json is what the harness serves
# at its local JWKS endpoint). Never use this key for anything else.
set -euo pipefail
cd "$(dirname "$0")"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out private.pem 2>/dev/null
modulus_hex=$(openssl rsa -in private.pem -noout -modulus | cut -d= -f2)
python3 - "$modulus_hex" > jwks.json <<'PY'
import base64, json, sys
n = bytes.fromhex(sys.argv[1])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench-rs256",
                            "n": b64(n), "e": b64((65537).to_bytes(3, "big"))}]}, indent=2))
PY
echo "wrote keys/private.pem and keys/jwks.json"
