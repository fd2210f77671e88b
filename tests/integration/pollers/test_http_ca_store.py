"""The HTTP session imports aiohttp with its TLS contexts' CA store unloaded (2 MB less
resident memory); the store is loaded, and verification is as strict as before, when a
context's first TLS connection starts. In a fresh interpreter: aiohttp is imported once."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys

import pytest
from conftest import ROOT

PROBE = """
import json, ssl
from nodes.http.session import _aiohttp

_aiohttp()
import aiohttp.connector as connector

verified = connector._SSL_CONTEXT_VERIFIED
before = verified.cert_store_stats()["x509_ca"]
verified.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="device.lan")
print(json.dumps({
    "before": before, "after": verified.cert_store_stats()["x509_ca"],
    "class": type(verified).__name__, "verify": int(verified.verify_mode),
    "hostname": verified.check_hostname,
    "other_contexts": ssl.create_default_context().cert_store_stats()["x509_ca"],
    "patch_gone": "set_default_verify_paths" not in vars(ssl.SSLContext),
}))
"""


def test_the_ca_store_is_loaded_at_the_first_tls_connection_not_at_the_import() -> None:
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    if not system:
        pytest.skip("this machine has no CA store to load")
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    got = json.loads(out.stdout)
    assert got == {"before": 0, "after": system, "class": "SSLContext",
                   "verify": int(ssl.CERT_REQUIRED), "hostname": True,
                   "other_contexts": system, "patch_gone": True}
