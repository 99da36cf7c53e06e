"""The RFB byte stream a VNC web client sends to its desktop, as the relay reads it: which pieces
are a person's input (classifier.py, for the idle timeout), and a viewer's stream with every
input removed (view_only.py, for a teacher's look)."""

from .classifier import InputClassifier
from .view_only import FilterFailed, ViewOnlyFilter

__all__ = ["FilterFailed", "InputClassifier", "ViewOnlyFilter"]
