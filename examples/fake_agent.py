#!/usr/bin/env python3
"""A stand-in for an LLM agent, so the example plan runs anywhere.

choo's `command` provider calls it with the prompt file's path (and the
prompt on stdin). It reads the lines "Create `PATH`: what it is" of the task
and writes those files. A task that says "(flaky)" leaves its work undone on
the first attempt, so that its validation fails and choo retries it with the
failure in the prompt, as it would for a real agent.
"""

import re
import sys
import time
from pathlib import Path

prompt = Path(sys.argv[1]).read_text(encoding="utf-8")
title = prompt.splitlines()[0]
print(f"fake agent: {title}")
time.sleep(0.3)  # agents take a while; this lets the live view show progress

if "(flaky)" in prompt and "## Attempt 1 failed" not in prompt:
    print("fake agent: got distracted and wrote nothing this time")
    sys.exit(0)

for path, what in re.findall(r"Create `([^`]+)`: (.+)", prompt):
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f'"""{what.strip()}"""\n\nREADY = True\n', encoding="utf-8")
    print(f"fake agent: wrote {path}")
