"""Moved to `forestops.fullstack.compose` (make fullstack reads the compose file too); kept as an
alias for test modules written before the move."""

from forestops.fullstack.compose import *  # noqa: F403
from forestops.fullstack.compose import ROOT, interpolate, load_compose  # noqa: F401
