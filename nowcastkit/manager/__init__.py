"""The manager: answers every worker message, keeps the checklist, launches what comes next.

    python -m nowcastkit.manager nowcast.yaml [--ignore-checklist]

For each message it checks the registry, merges the payload into the
checklist at the worker's ``checklist key``, calls ``after_<worker>(msg,
config, checklist)`` from the next workers module, commits all of that to its
store, replies, then launches the returned workers and watches them to the
end. Every message gets a reply; nothing a message carries or
``after_<worker>`` raises stops the manager, and a kill at any instant loses
nothing: see :mod:`nowcastkit.manager.recovery`.
"""

from nowcastkit.manager.dispatch import MANAGER_REPLIES, Manager, handle
from nowcastkit.manager.loop import main

__all__ = ["MANAGER_REPLIES", "Manager", "handle", "main"]
