"""The run report: one self-contained report.html (metrics, curves, findings, the
doctor's panels, retrieval examples with thumbnails, generated captions, config)."""

from contrastkit.app.report.build import REPORT_FILE, examples_html, write_report

__all__ = ["REPORT_FILE", "examples_html", "write_report"]
