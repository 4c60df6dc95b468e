"""The demo: the three cases of DESIGN.md played on real files (``make demo``)."""
