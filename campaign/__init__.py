"""campaign: advocacy letter campaigns to international institutions.

The public entry points are the ``campaign`` command (``campaign.cli``) and the
functions in ``campaign.api``; see docs/ARCHITECTURE.md for the module map.
"""

__version__ = "0.1.0"
