#!/usr/bin/env python3
"""The HTTP contract, checked: openapi.yaml is valid OpenAPI 3.1, GET /openapi.json serves it,
every route of the code is in it, and schemathesis (--checks all) finds no 5xx and no answer
that breaks it against a live node.

  scripts/contract-test.py                       # the test command's short run
  scripts/contract-test.py --max-examples 400    # the long run (BENCHMARKS.md)
"""
import argparse
import glob
import json
import pathlib
import re
import shutil
import subprocess
import sys
import urllib.request

import yaml
from openapi_spec_validator import validate

root = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(root / "scripts"))
embed = __import__("embed-openapi")
import livenode  # noqa: E402  (scripts/ is on the path above)


def code_routes() -> set:
    routes = set()
    for path in glob.glob(str(root / "Sources/AgentAPI/*.swift")):
        for match in re.finditer(r'router\.(get|post|put|patch|delete|ws)\("([^"]*)"', pathlib.Path(path).read_text()):
            method = "get" if match.group(1) == "ws" else match.group(1)
            routes.add((method, re.sub(r":(\w+)", r"{\1}", match.group(2))))
    return routes


def check_document() -> None:
    document = yaml.safe_load((root / "openapi.yaml").read_text())
    validate(document)
    print("openapi.yaml: valid OpenAPI", document["openapi"])
    embedded = (root / "Sources/AgentAPI/OpenAPIDocument.swift").read_text()
    if embed.swift_source(embed.document_json()) != embedded:
        sys.exit("Sources/AgentAPI/OpenAPIDocument.swift is not openapi.yaml: run scripts/embed-openapi.py")
    operations = {(method, path) for path, item in document["paths"].items() for method in item
                  if method in ("get", "post", "put", "patch", "delete")}
    missing = code_routes() - operations
    if missing:
        sys.exit(f"routes in the code that openapi.yaml lacks: {sorted(missing)}")
    print(f"openapi.yaml: {len(document['paths'])} paths, {len(operations)} operations, every route of the code")


def run_schemathesis(binary: str, max_examples: int, seed: str | None) -> int:
    node, base, data, log_path = livenode.start(binary, "contract-admin", "switchboard-contract-")
    try:
        with urllib.request.urlopen(base + "/openapi.json", timeout=5) as answer:
            served = json.load(answer)
        if served != yaml.safe_load((root / "openapi.yaml").read_text()):
            sys.exit("GET /openapi.json is not openapi.yaml")
        print("GET /openapi.json: the document")
        command = [shutil.which("st") or "st", "--config-file", str(root / "schemathesis.toml"), "run", base + "/openapi.json",
                   "--checks", "all", "-H", "Authorization: Bearer contract-admin", "--max-examples", str(max_examples),
                   "--workers", "1", "--no-color",
                   # The events WebSocket: an HTTP fuzzer that gets its 101 cannot read on; the
                   # socket is tested by the WebSocket tests (EventsSocketTests, HostileClientTests).
                   "--exclude-path", "/v1/events", "--exclude-path", "/v1/webchat/{inbox}/events"]
        if seed:
            command += ["--seed", seed]
        print("+", " ".join(command).replace("contract-admin", "[token]"), flush=True)
        result = subprocess.run(command)
        if node.poll() is not None:
            print(f"the node exited during the run (code {node.returncode}); its log: {open(log_path).read()[-4000:]}")
            return 1
        return result.returncode
    finally:
        node.terminate()
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(root / ".build/debug/switchboard"), help="the switchboard executable (default: the debug build)")
    parser.add_argument("--max-examples", type=int, default=25, help="schemathesis examples per operation and phase (default 25)")
    parser.add_argument("--seed", help="replay a schemathesis seed")
    arguments = parser.parse_args()
    check_document()
    code = run_schemathesis(arguments.binary, arguments.max_examples, arguments.seed)
    print("contract: " + ("1 passed, 0 failed" if code == 0 else "0 passed, 1 failed"))
    sys.exit(code)


if __name__ == "__main__":
    main()
