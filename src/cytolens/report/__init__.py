"""HTML + PNG reports and figure helpers shared by every capability."""

from cytolens.report.figures import (
    draw_boxes,
    image_panel,
    overlay_outlines,
    save_figure,
    to_display,
)
from cytolens.report.html import Report

__all__ = ["Report", "draw_boxes", "image_panel", "overlay_outlines", "save_figure", "to_display"]
