"""Long reliability runs: SIGKILL chaos, API load, and the fast reliability suites, summarised in RELIABILITY.md.

`./run reliability` (reliability/run.py) runs them all; each part writes reliability/results/<name>.json.
"""
