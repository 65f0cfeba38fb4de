#!/usr/bin/env python3
"""A provider simulator speaking the documented HTTP of the APIs Switchboard sends replies to.

  WhatsApp Cloud API   POST /{version}/{phone-number-id}/messages
                       Authorization: Bearer <access token>, JSON {"messaging_product": "whatsapp",
                       "to", "type": "text" | "template", ...}; answers 200 with
                       {"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid..."}]}
                       or Graph's error shape {"error": {"message", "type", "code", "fbtrace_id"}}.
  Twilio Messaging     POST /2010-04-01/Accounts/{AccountSid}/Messages.json
                       HTTP basic auth (AccountSid:AuthToken), form body To, From, Body[, StatusCallback];
                       answers 201 with the Message resource ({"sid": "SM...", "status": "queued", ...})
                       or Twilio's error shape {"code", "message", "more_info", "status"}.

Every request is checked as the provider checks it (credentials, required fields) and recorded.
A test drives it through /_sim:
  GET  /_sim/sent                 every accepted send, in order (JSON list)
  GET  /_sim/requests             every request, accepted or not
  POST /_sim/mode  {"fail": N, "status": 500}   the next N sends answer that status
                   {"hold": true|false}         hold sends (no answer) until released
                   {"delay_ms": N}              answer each send after N ms

Usage: provider-sim.py [--port 0] [--whatsapp-token T] [--twilio-sid AC.. --twilio-token T]
Prints "listening <port>" on stdout once it accepts connections.
"""
import argparse
import base64
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Condition()
sent = []
requests = []
mode = {"fail": 0, "status": 500, "hold": False, "delay_ms": 0}
counter = [0]


def next_id(prefix):
    with lock:
        counter[0] += 1
        return f"{prefix}{counter[0]:032d}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "provider-sim"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        if self.path == "/_sim/sent":
            with lock:
                return self.answer(200, sent)
        if self.path == "/_sim/requests":
            with lock:
                return self.answer(200, requests)
        self.answer(404, {"error": {"message": "Unknown path", "type": "OAuthException", "code": 803}})

    def do_POST(self):
        body = self.read_body()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_sim/mode":
            with lock:
                mode.update(json.loads(body or b"{}"))
                lock.notify_all()
            return self.answer(200, mode)
        with lock:
            requests.append({"path": path, "headers": dict(self.headers), "body": body.decode("utf-8", "replace")})
            while mode["hold"]:
                lock.wait(0.05)
            delay = mode["delay_ms"]
        if delay:
            time.sleep(delay / 1000)
        with lock:
            if mode["fail"] > 0:
                mode["fail"] -= 1
                status = mode["status"]
                return self.answer(status, {"error": {"message": "(#2) Service temporarily unavailable", "type": "OAuthException",
                                                      "code": 2, "fbtrace_id": "sim"}} if "/messages" in path else
                                   {"code": 20500, "message": "Internal Server Error", "more_info": "https://www.twilio.com/docs/errors/20500", "status": status})
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[2] == "messages":
            return self.whatsapp(parts[1], body)
        if len(parts) == 4 and parts[:2] == ["2010-04-01", "Accounts"] and parts[3] == "Messages.json":
            return self.twilio(parts[2], body)
        self.answer(404, {"error": {"message": f"Unknown path {path}", "type": "OAuthException", "code": 803}})

    def whatsapp(self, phone_number_id, body):
        if self.headers.get("Authorization") != f"Bearer {args.whatsapp_token}":
            return self.answer(401, {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190, "fbtrace_id": "sim"}})
        try:
            message = json.loads(body)
        except ValueError:
            return self.answer(400, {"error": {"message": "(#100) Invalid JSON", "type": "OAuthException", "code": 100}})
        to = message.get("to", "")
        kind = message.get("type")
        problems = []
        if message.get("messaging_product") != "whatsapp":
            problems.append("messaging_product must be whatsapp")
        if not to.isdigit():
            problems.append("to must be a wa_id (digits)")
        if kind == "text" and not (message.get("text") or {}).get("body"):
            problems.append("text.body is required")
        if kind == "template" and not (message.get("template") or {}).get("name"):
            problems.append("template.name is required")
        if kind not in ("text", "template"):
            problems.append(f"type {kind} is not supported by the simulator")
        if to.endswith("0000000"):
            problems.append("(#131026) Message undeliverable")
            return self.answer(400, {"error": {"message": "(#131026) Message undeliverable", "type": "OAuthException", "code": 131026}})
        if problems:
            return self.answer(400, {"error": {"message": "(#100) " + "; ".join(problems), "type": "OAuthException", "code": 100}})
        wamid = next_id("wamid.")
        with lock:
            sent.append({"provider": "whatsapp", "id": wamid, "receivedAt": time.time(), "phoneNumberId": phone_number_id, "to": to, "type": kind,
                         "text": (message.get("text") or {}).get("body"), "template": message.get("template")})
        self.answer(200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": wamid}]})

    def twilio(self, account_sid, body):
        expected = "Basic " + base64.b64encode(f"{args.twilio_sid}:{args.twilio_token}".encode()).decode()
        if account_sid != args.twilio_sid or self.headers.get("Authorization") != expected:
            return self.answer(401, {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})
        form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        for field in ("To", "From", "Body"):
            if not form.get(field):
                return self.answer(400, {"code": 21604 if field == "To" else 21602, "message": f"A '{field}' is required.",
                                         "more_info": "https://www.twilio.com/docs/errors/21602", "status": 400})
        sid = next_id("SM")
        with lock:
            sent.append({"provider": "twilio", "id": sid, "receivedAt": time.time(), "to": form["To"], "from": form["From"], "text": form["Body"],
                         "statusCallback": form.get("StatusCallback")})
        self.answer(201, {"sid": sid, "account_sid": account_sid, "to": form["To"], "from": form["From"], "body": form["Body"],
                          "status": "queued", "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
                          "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"})


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--whatsapp-token", default="sim-access-token")
parser.add_argument("--twilio-sid", default="ACsim")
parser.add_argument("--twilio-token", default="sim-auth-token")
args = parser.parse_args()
server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
server.daemon_threads = True
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
