#!/usr/bin/env python3
"""A fake Volcengine RTC OpenAPI that checks every signature with the vendor's own SDK.

Independent of our Rust signer and of our simulator (src/sim): for each request it rebuilds
what volc-sdk-python's Service would have signed (the same method, path, query, Host header
and security token, the clock pinned to the request's X-Date), signs it with
volcengine.auth.SignerV4 and compares the result with the Authorization header received, byte
for byte. A mismatch is answered 401 SignatureDoesNotMatch in the vendor's envelope; a good
request gets a canned, vendor-shaped answer for GetRecordTask (2022-06-01, 2023-06-01) or
GetWebCastTask (2020-12-01).

Usage:
  python3 tests/py/sdk_server.py [--port 0] [--credential AK:SK[:TOKEN]]...
                                 [--region cn-north-1]... [--max-skew 900] [--answers FILE]

Prints `listening on 127.0.0.1:PORT` as its first stdout line (flushed), then serves until
killed. Each request is logged on stderr as one line (no secrets). Defaults: credential
AKLTtest:c2VjcmV0 (no token), regions cn-north-1 and ap-singapore-1, service rtc.

Errors (vendor codes, HTTP status):
  no Authorization                       MissingAuthenticationToken 401
  malformed Authorization / Credential   InvalidAuthorization 400 / InvalidCredential 400
  X-Date missing, malformed or > skew    InvalidTimestamp 403
  unknown access key id                  InvalidAccessKey 401
  token missing / wrong / unexpected     InvalidSecretToken 401
  signature or body hash differs         SignatureDoesNotMatch 401
  unknown Action/Version                 InvalidActionOrVersion 404
  AppId/RoomId (or TaskId for records)   MissingParameter 400

Canned answers (fixed, so tests can assert exact metric values): see RECORD_TASK and
WEBCAST_TASK below; their times are offsets (ms) from --start-time-ms (default: one hour before
the server started, whole seconds), so the tasks look recent. --answers FILE replaces them,
as given (absolute times), with {"RecordTask": {...}, "WebCastTask": {...}} (either key
optional).
"""
import argparse
import calendar
import copy
import json
import sys
import threading
import time
import uuid
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

try:
    from volcengine.auth.SignerV4 import SignerV4
    from volcengine.Credentials import Credentials
    from volcengine.base.Request import Request
except ImportError as e:  # fail loudly: tests using this server must not be skipped
    sys.stderr.write("sdk_server.py: the vendor SDK is missing (pip install volcengine): %s\n" % e)
    sys.exit(3)

SERVICE = "rtc"

# SignerV4.sign reads the clock through a static method that we pin per request: one at a time.
SIGN_LOCK = threading.Lock()

RECORD_TASK = {
    "StartTime": 0,  # START (see --start-time-ms)
    "EndTime": 900000,  # START + 900 s
    "Status": 3,
    "StopReason": "StopByAPI",
    "RecordFileList": [
        {
            "Vid": "v02b9ag10000cl4f2u3c77u0a0example",
            "Duration": 600000,
            "Size": 104857600,
            "StartTime": 0,  # START
            "StreamList": [{"UserId": "host_user", "StreamType": 0}],
            "VideoCodec": "h264",
            "AudioCodec": "aac",
            "VideoWidth": 1280,
            "VideoHeight": 720,
        },
        {
            "ObjectKey": "record/part-2.mp4",
            "Duration": 300000,
            "Size": 52428800,
            "StartTime": 600000,  # START + 600 s
            "StreamList": [{"UserId": "guest", "StreamType": 1}],
            "VideoCodec": "h264",
            "AudioCodec": "aac",
            "VideoWidth": 1920,
            "VideoHeight": 1080,
        },
    ],
}

WEBCAST_TASK = {
    "StartTime": 0,  # START
    "EndTime": 0,
    "Status": 2,
    "StopReason": "",
    "UserId": "webcast_bot",
    "SourceURL": "https://example.com/live/page",
    "MaxRunningTime": 7200,
    "VideoSolutions": [{"Width": 1280, "Height": 720, "FrameRate": 15, "Bitrate": 1200}],
    "MonitorConfig": {"BlankCheckInterval": 0, "CrashCheckInterval": 0, "FreezeCheckInterval": 0},
    "EventNotifyConfig": {"EnableEventNotify": False, "StartTimeout": 0},
}

VERSIONS = {
    "GetRecordTask": ("2022-06-01", "2023-06-01"),
    "GetWebCastTask": ("2020-12-01",),
}


def shift_times(task, start_ms):
    """The canned task with its StartTime/EndTime offsets made absolute (EndTime 0 stays 0)."""
    task = copy.deepcopy(task)
    task["StartTime"] += start_ms
    if task.get("EndTime"):
        task["EndTime"] += start_ms
    for f in task.get("RecordFileList", []):
        f["StartTime"] += start_ms
    return task


class Refused(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def parse_x_date(value):
    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))
    except (TypeError, ValueError):
        return None


def parse_authorization(value):
    """-> (ak, date, region, service, signed_headers). Raises Refused."""
    value = value.strip()
    if not value.startswith("HMAC-SHA256 "):
        raise Refused(400, "InvalidAuthorization", "expected the HMAC-SHA256 algorithm")
    parts = {}
    for part in value[len("HMAC-SHA256 "):].split(","):
        name, sep, v = part.strip().partition("=")
        if not sep:
            raise Refused(400, "InvalidAuthorization", "malformed Authorization component")
        parts[name] = v
    if not parts.get("Signature"):
        raise Refused(401, "MissingSignature", "the Authorization header carries no signature")
    if "Credential" not in parts or not parts.get("SignedHeaders"):
        raise Refused(400, "InvalidAuthorization", "Credential and SignedHeaders are required")
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "request" or not scope[0]:
        raise Refused(400, "InvalidCredential", "expected AK/date/region/service/request")
    return scope[0], scope[1], scope[2], scope[3], parts["SignedHeaders"]


class Api(object):
    def __init__(self, credentials, regions, max_skew, answers, start_ms):
        self.credentials = credentials  # ak -> (sk, token or "")
        self.regions = regions
        self.max_skew = max_skew
        self.record_task = answers.get("RecordTask") or shift_times(RECORD_TASK, start_ms)
        self.webcast_task = answers.get("WebCastTask") or shift_times(WEBCAST_TASK, start_ms)

    def check_signature(self, method, path, raw_query, headers, body):
        """Recomputes the signature with the SDK; returns (ak, region). Raises Refused."""
        authorization = headers.get("Authorization")
        if authorization is None:
            raise Refused(401, "MissingAuthenticationToken", "the request has no Authorization header")
        ak, date, region, service, signed_headers = parse_authorization(authorization)

        x_date = headers.get("X-Date")
        at = parse_x_date(x_date)
        if at is None or abs(time.time() - at) > self.max_skew:
            raise Refused(403, "InvalidTimestamp", "X-Date is missing, malformed or outside the allowed skew")
        if date != x_date[:8]:
            raise Refused(400, "InvalidCredential", "scope date differs from X-Date")
        if service != SERVICE or region not in self.regions:
            raise Refused(400, "InvalidCredential", "wrong region or service")
        if ak not in self.credentials:
            raise Refused(401, "InvalidAccessKey", "the access key id is not known")
        sk, token = self.credentials[ak]
        sent_token = headers.get("X-Security-Token")
        if (sent_token or "") != token:
            raise Refused(401, "InvalidSecretToken", "the security token is missing or not valid")

        # What the SDK's Service would have built for this request.
        req = Request()
        req.set_method(method)
        req.set_path(path)
        host = headers.get("Host", "")
        req.set_host(host)
        sdk_headers = OrderedDict()
        sdk_headers["Host"] = host
        req.set_headers(sdk_headers)
        query = OrderedDict()
        for k, v in parse_qsl(raw_query, keep_blank_values=True):
            if k in query:
                raise Refused(400, "InvalidParameter", "duplicate query parameter %s" % k)
            query[k] = v
        req.set_query(query)
        req.set_body(body)

        with SIGN_LOCK:
            SignerV4.get_current_format_date = staticmethod(lambda: x_date)
            SignerV4.sign(req, Credentials(ak, sk, SERVICE, region, token))
        if headers.get("X-Content-Sha256") != req.headers["X-Content-Sha256"]:
            raise Refused(401, "SignatureDoesNotMatch", "X-Content-Sha256 does not match the body")
        if authorization != req.headers["Authorization"]:
            raise Refused(401, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you provided.")
        return ak, region

    def answer(self, query):
        """-> (status, Result or None, action, version). Raises Refused."""
        action = query.get("Action", "")
        version = query.get("Version", "")
        if version not in VERSIONS.get(action, ()):
            raise Refused(404, "InvalidActionOrVersion", "unknown Action/Version %s/%s" % (action, version))
        required = ["AppId", "RoomId"] + (["TaskId"] if action == "GetRecordTask" else [])
        for name in required:
            if not query.get(name):
                raise Refused(400, "MissingParameter", "%s is required" % name)
        if action == "GetRecordTask":
            return {"RecordTask": copy.deepcopy(self.record_task)}
        return {"WebCastTask": copy.deepcopy(self.webcast_task)}


def make_handler(api):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sdk-server"

        def log_message(self, fmt, *args):  # one line per request is written by handle_any
            pass

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            meta = OrderedDict([
                ("RequestId", uuid.uuid4().hex),
                ("Action", query.get("Action", "")),
                ("Version", query.get("Version", "")),
                ("Service", SERVICE),
                ("Region", self.regions_default()),
            ])
            try:
                ak, region = api.check_signature(self.command, url.path or "/", url.query,
                                                 self.headers, body.decode("utf-8", "replace"))
                meta["Region"] = region
                result = api.answer(query)
                status, envelope = 200, {"ResponseMetadata": meta, "Result": result}
                outcome = "ok"
            except Refused as r:
                meta["Error"] = {"Code": r.code, "Message": r.message}
                status, envelope = r.status, {"ResponseMetadata": meta}
                outcome = r.code
            payload = json.dumps(envelope).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            sys.stderr.write("sdk_server: %s %s %s %s\n" % (
                self.command, meta["Action"], status, outcome))
            sys.stderr.flush()

        def regions_default(self):
            return api.regions[0] if api.regions else ""

        do_GET = handle_any
        do_POST = handle_any

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    p.add_argument("--credential", action="append", default=[],
                   help="AK:SK or AK:SK:TOKEN; repeatable (default AKLTtest:c2VjcmV0)")
    p.add_argument("--region", action="append", default=[],
                   help="accepted region; repeatable (default cn-north-1 and ap-singapore-1)")
    p.add_argument("--max-skew", type=float, default=900.0, help="seconds around X-Date")
    p.add_argument("--answers", help="JSON file overriding the canned RecordTask/WebCastTask")
    p.add_argument("--start-time-ms", type=int, default=(int(time.time()) - 3600) * 1000,
                   help="StartTime of the canned tasks (default: an hour ago)")
    args = p.parse_args()

    credentials = {}
    for c in args.credential or ["AKLTtest:c2VjcmV0"]:
        parts = c.split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            p.error("--credential must be AK:SK[:TOKEN]")
        credentials[parts[0]] = (parts[1], parts[2] if len(parts) == 3 else "")
    answers = {}
    if args.answers:
        with open(args.answers) as f:
            answers = json.load(f)
    api = Api(credentials, args.region or ["cn-north-1", "ap-singapore-1"], args.max_skew, answers,
              args.start_time_ms)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(api))
    server.daemon_threads = True
    sys.stdout.write("listening on 127.0.0.1:%d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
