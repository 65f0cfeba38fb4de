#!/usr/bin/env python3
"""Writes Sources/AgentAPI/WidgetScript.swift from Sources/AgentAPI/Widget/widget.js: the web
chat widget is built into the binary (GET /widget.js). Run it after editing widget.js;
widget-browser-test.py checks the two agree."""
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent


def swift_source() -> str:
    js = (root / "Sources/AgentAPI/Widget/widget.js").read_text()
    assert '"""#' not in js, "widget.js must not contain a raw string terminator"
    return ('// Generated from Widget/widget.js by scripts/embed-widget.py: edit that file, then run the script.\n\n'
            '/// The web chat widget, served at `GET /widget.js`: built into the binary, no external assets.\n'
            'enum WidgetScript {\n    static let source = #"""\n' + js + '"""#\n}\n')


if __name__ == "__main__":
    (root / "Sources/AgentAPI/WidgetScript.swift").write_text(swift_source())
    print("wrote Sources/AgentAPI/WidgetScript.swift")
