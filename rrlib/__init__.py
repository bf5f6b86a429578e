"""rrlib: the helper package of the ReasoningRec workbook. All logic lives here; the
notebooks under notebooks/ only import, orchestrate, explain and plot."""

__version__ = "0.1.0"
