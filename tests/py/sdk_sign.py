#!/usr/bin/env python3
"""Signs requests with the vendor's own SDK (volc-sdk-python, `pip install volcengine`).

Used by tests/sdk_conformance.rs to check our signer byte for byte against the SDK.

stdin: a JSON array of requests, each
  {"method", "host", "path", "query": [[key, value], ...], "body" (str),
   "ak", "sk", "token" (str or null), "region", "service", "x_date" ("YYYYMMDDTHHMMSSZ")}
stdout: a JSON array, one object per request, in order:
  {"authorization", "x_date", "content_sha256", "signed_query"}
where signed_query is the SDK's canonical query (Util.norm_query).

It drives volcengine.auth.SignerV4.sign exactly as the SDK's Service does (a Request with a
`Host` header, the query as a dict), with the clock pinned to each request's x_date.
Exits non-zero with a message if the SDK is missing.
"""
import json
import sys
from collections import OrderedDict

try:
    from volcengine.auth.SignerV4 import SignerV4
    from volcengine.Credentials import Credentials
    from volcengine.base.Request import Request
    from volcengine.util.Util import Util
except ImportError as e:  # fail loudly: the conformance test must not be skipped
    sys.stderr.write("sdk_sign.py: the vendor SDK is missing (pip install volcengine): %s\n" % e)
    sys.exit(3)


def sdk_sign(case):
    fixed = case["x_date"]
    # SignerV4.sign reads the clock through this static method; pin it.
    SignerV4.get_current_format_date = staticmethod(lambda: fixed)

    req = Request()
    req.set_method(case["method"])
    req.set_host(case["host"])
    req.set_path(case["path"])
    headers = OrderedDict()
    headers["Host"] = case["host"]
    req.set_headers(headers)
    query = OrderedDict()
    for k, v in case["query"]:
        if k in query:
            raise ValueError("duplicate query key %r: the SDK takes a dict" % k)
        query[k] = v
    req.set_query(query)
    req.set_body(case["body"])

    creds = Credentials(case["ak"], case["sk"], case["service"], case["region"],
                        case["token"] or "")
    SignerV4.sign(req, creds)
    return {
        "authorization": req.headers["Authorization"],
        "x_date": req.headers["X-Date"],
        "content_sha256": req.headers["X-Content-Sha256"],
        "signed_query": Util.norm_query(req.query),
    }


def main():
    cases = json.load(sys.stdin)
    json.dump([sdk_sign(c) for c in cases], sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
