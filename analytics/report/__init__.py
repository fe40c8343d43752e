"""The monthly PDF summary for PIs: figures (matplotlib -> SVG), context, WeasyPrint render."""
