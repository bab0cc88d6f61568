"""Make docs/phoenix.png: a run of the example plan, sent to Phoenix, in Phoenix's UI.

    PYTHONPATH=. .venv/bin/python -m tests.otlp.screenshot [--serve]

Starts a private daemon and a private Phoenix (the cached venv of
tests/otlp/conftest.py), runs the example plan with the installed ``choo``,
sends it with ``choo history export --otlp`` and captures its trace with
the ``storage`` unit's retried attempt (passed after a failed one) selected. ``--serve``
leaves both running and prints their URLs, to look around by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from protocol.otlp import trace_id
from tests.otlp.conftest import Phoenix, phoenix_venv

ROOT = Path(__file__).resolve().parents[2]
CHOO = Path(sys.executable).with_name("choo")
CHROMIUM = "/usr/bin/chromium"


def choo(env: dict[str, str], *args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [str(CHOO), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"choo {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def record_run(env: dict[str, str], scratch: Path) -> str:
    repo = scratch / "example"
    shutil.copytree(ROOT / "examples", repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    choo(env, "run", "specs/tasks", cwd=repo)
    listed = choo(env, "history", "list", "--all", "--json")
    return str(json.loads(listed)["runs"][0]["id"])


def capture(phoenix: Phoenix, run_id: str, out: Path) -> None:
    project = httpx.get(f"{phoenix.url}/v1/projects", timeout=10).json()["data"][0]["id"]
    url = f"{phoenix.url}/projects/{project}/traces/{trace_id(run_id):032x}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        page.goto(url)
        page.get_by_text("unit storage").first.wait_for(timeout=120_000)
        # The storage unit's flaky task: its failed attempt, and the retry that passed,
        # selected to show its attributes.
        attempts = page.get_by_text("invoke_agent command")
        for n in range(attempts.count()):
            attempts.nth(n).click()
            page.get_by_role("tab", name="Attributes").first.click()
            page.wait_for_load_state("networkidle")
            if page.get_by_text("passed_after_retry", exact=True).count():
                break
        page.screenshot(path=str(out))
        browser.close()
    print(f"saved {out} ({url})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="leave the servers running")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="chshot"))
    env = {**os.environ, "CHOO_HOME": str(scratch / "h"), "PYTHONPATH": str(ROOT)}
    phoenix = Phoenix(phoenix_venv(), scratch / "phoenix")
    choo(env, "daemon", "start", "--port", "0")
    try:
        phoenix.start()
        run_id = record_run(env, scratch)
        sent = json.loads(choo(env, "history", "export", run_id, "--otlp", phoenix.url, "--json"))
        phoenix.wait_spans(sent["trace_id"], sent["spans"])  # stored in batches, after the answer
        capture(phoenix, run_id, ROOT / "docs" / "phoenix.png")
        if args.serve:
            print(f"Phoenix: {phoenix.url}  (Ctrl-C to stop)")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        phoenix.stop()
        choo(env, "daemon", "stop")
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
