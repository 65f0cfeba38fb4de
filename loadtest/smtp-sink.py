#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) that keeps what it accepts: the relay an e-mail inbox's replies
go to in tests and trials.

  smtp-sink.py --out messages.jsonl [--port 0] [--cert relay.pem --key relay.key]
               [--user U --password P]

With a certificate it offers STARTTLS; with a user it offers AUTH (PLAIN, LOGIN) only after
STARTTLS and refuses MAIL FROM before authentication. Each accepted message is one JSON line
in --out: {"from", "to": [...], "data": <the message as received>, "tls": bool, "login": user}.
Prints "listening <port>" once it accepts connections.
"""
import argparse
import json
import socket
import ssl
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--out", required=True)
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--user")
parser.add_argument("--password")
args = parser.parse_args()


class Keep:
    async def handle_DATA(self, server, session, envelope):
        with open(args.out, "a", encoding="utf-8") as out:
            out.write(json.dumps({
                "from": envelope.mail_from, "to": envelope.rcpt_tos,
                "data": envelope.original_content.decode("utf-8", "replace"),
                "tls": session.ssl is not None, "login": session.auth_data if session.authenticated else None,
            }) + "\n")
        return "250 2.0.0 Ok: queued"


def authenticate(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login.decode() == args.user and auth_data.password.decode() == args.password:
        return AuthResult(success=True, auth_data=args.user)
    return AuthResult(success=False, handled=False)


port = args.port
if port == 0:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
tls = None
if args.cert:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
options = {}
if args.user:
    options = {"authenticator": authenticate, "auth_required": True, "auth_require_tls": True}
controller = Controller(Keep(), hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=tls is not None, **options)
controller.start()
print(f"listening {port}", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
