"""Debian's chromium (never a downloaded browser) and the flags every browser test and
``scripts/screenshots`` launch it with: headless, no sandbox (CI runs as root), no network of
its own."""

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
