"""The demo: the three cases of README.md played on real files (``make demo``)."""
