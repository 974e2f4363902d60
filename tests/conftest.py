"""The suite's fixtures come from the harness's pytest plugin (kprintd/harness/pytest_plugin.py)."""

pytest_plugins = ["kprintd.harness.pytest_plugin"]
