"""How a method is registered: the registry as data, built-ins, outside methods, --methods.

* :mod:`.entry`: :class:`MethodEntry`, one method a run can name;
* :mod:`.builtin`: the built-in methods and suites (one line per method);
* :mod:`.outside`: methods by import path (``module:Class``) or entry point;
* :mod:`.select`: ``--methods`` / ``--suite`` parsing and loading a method's class;
* :mod:`.listing`: ``bench list``.
"""

from leaderboard.methods.builtin import METHODS, SUITES
from leaderboard.methods.entry import MethodEntry
from leaderboard.methods.select import load_class, resolve, runnable, suite

__all__ = ["METHODS", "SUITES", "MethodEntry", "load_class", "resolve", "runnable", "suite"]
